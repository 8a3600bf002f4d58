"""Figure 5, pass@k before and after RL per initialisation (loglinear simulator, exact pass@k).

The figure's code lives in giftlab/figures/fig5_passk.py (shipped in the package); this runs it:
    python scripts/fig5_passk.py [--quick] [--out DIR]
"""

from giftlab.figures.fig5_passk import main

if __name__ == "__main__":
    main()
