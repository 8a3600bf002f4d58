"""Figure 6, final reward against beta: GIFT initialisations over beta, then the same sampled GRPO

The figure's code lives in giftlab/figures/fig6_beta_sweep.py (shipped in the package); this runs it:
    python scripts/fig6_beta_sweep.py [--quick] [--out DIR]
"""

from giftlab.figures.fig6_beta_sweep import main

if __name__ == "__main__":
    main()
