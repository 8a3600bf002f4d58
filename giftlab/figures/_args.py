"""Shared command line of the figure scripts: --quick (small sizes) and --out (folder)."""

from __future__ import annotations

import argparse
from pathlib import Path


def figure_args(description: str, argv=None):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes (tests)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("paper_figures"),
        help="output folder (default ./paper_figures)",
    )
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return args
