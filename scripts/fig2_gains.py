"""Figure 2, exact gains: the sequence-level Gibbs policy's per-token gain g_t against GIFT's constant beta.

The figure's code lives in giftlab/figures/fig2_gains.py (shipped in the package); this runs it:
    python scripts/fig2_gains.py [--quick] [--out DIR]
"""

from giftlab.figures.fig2_gains import main

if __name__ == "__main__":
    main()
