"""Figure 4, the bridge: exact KL-regularised RL from SFT, GIFT and Gibbs starts; distance to the

The figure's code lives in giftlab/figures/fig4_bridge.py (shipped in the package); this runs it:
    python scripts/fig4_bridge.py [--quick] [--out DIR]
"""

from giftlab.figures.fig4_bridge import main

if __name__ == "__main__":
    main()
