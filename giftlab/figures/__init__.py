"""The paper figures: one module per figure (giftlab/figures/figN_*.py, each runnable with
`python -m giftlab.figures.figN_name --out DIR [--quick]`, each writing NAME.csv with provenance
and NAME.png). They ship inside the package, so `giftlab figures` works from a wheel; the
scripts/figN_*.py files of the source checkout call the same modules."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

FIGURES_DIR = Path(__file__).resolve().parent


def figure_scripts() -> list[Path]:
    """The figure modules, in order (fig1 ... fig6)."""
    return sorted(FIGURES_DIR.glob("fig[0-9]*.py"))


def regenerate(out: Path, quick: bool = False, log=print) -> list[dict]:
    """Run every figure module in its own process; returns [{script, seconds, png}] and raises
    if one fails."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for script in figure_scripts():
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", f"giftlab.figures.{script.stem}", "--out", str(out)]
        res = subprocess.run(cmd + (["--quick"] if quick else []), capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{script.name} failed:\n{res.stderr[-3000:]}")
        dt = time.perf_counter() - t0
        log(f"{script.name:24s} {dt:6.1f} s")
        done.append({"script": script.name, "seconds": dt, "png": out / (script.stem + ".png")})
    return done
