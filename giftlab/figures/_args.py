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
        default=None,
        help="output folder (default ./paper_figures; with --quick runs/figures-quick)",
    )
    args = p.parse_args(argv)
    if args.out is None:
        args.out = Path("runs/figures-quick" if args.quick else "paper_figures")
    from giftlab.figures import prepare_figure_folder

    prepare_figure_folder(args.out, args.quick)  # quick figures never replace full-size ones
    return args
