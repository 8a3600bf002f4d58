"""Regenerate every figure: run each scripts/fig*.py (one per figure) into a folder."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

SCRIPTS_DIR = Path(__file__).resolve().parents[1] / "scripts"


def figure_scripts() -> list[Path]:
    scripts = sorted(SCRIPTS_DIR.glob("fig[0-9]*.py"))
    if not scripts:
        raise FileNotFoundError(
            f"no figure scripts in {SCRIPTS_DIR} (giftlab figures needs the source checkout)"
        )
    return scripts


def regenerate(out: Path, quick: bool = False, log=print) -> list[dict]:
    """Run every figure script; returns [{script, seconds, pngs}] and raises if one fails."""
    out = Path(out).resolve()  # the scripts run from scripts/: a relative path must not move
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for script in figure_scripts():
        t0 = time.perf_counter()
        cmd = [sys.executable, str(script), "--out", str(out)] + (["--quick"] if quick else [])
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=SCRIPTS_DIR)
        if res.returncode != 0:
            raise RuntimeError(f"{script.name} failed:\n{res.stderr[-3000:]}")
        dt = time.perf_counter() - t0
        log(f"{script.name:24s} {dt:6.1f} s")
        done.append({"script": script.name, "seconds": dt, "png": out / (script.stem + ".png")})
    return done
