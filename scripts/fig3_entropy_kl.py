"""Figure 3, entropy and KL to base against beta: exact Gibbs vs the policy GIFT's target induces.

The figure's code lives in giftlab/figures/fig3_entropy_kl.py (shipped in the package); this runs it:
    python scripts/fig3_entropy_kl.py [--quick] [--out DIR]
"""

from giftlab.figures.fig3_entropy_kl import main

if __name__ == "__main__":
    main()
