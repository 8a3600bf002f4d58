"""Figure 1, the gate: GIFT's target gold mass and mixture weight w against beta, per base probability.

The figure's code lives in giftlab/figures/fig1_gate.py (shipped in the package); this runs it:
    python scripts/fig1_gate.py [--quick] [--out DIR]
"""

from giftlab.figures.fig1_gate import main

if __name__ == "__main__":
    main()
