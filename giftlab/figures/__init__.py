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


SIZE_MARKER = ".giftlab-figures"  # "full" or "quick": the size of the figures in the folder


def prepare_figure_folder(out: Path, quick: bool) -> None:
    """Make `out` (or fail naming it) before any figure runs, and refuse quick figures over
    full-size ones (a folder marked "full", or one holding figures without a mark)."""
    from giftlab.errors import InputError
    from giftlab.outputs import check_names, make_folder

    out = make_folder(out)
    marker = out / SIZE_MARKER
    size = marker.read_text().strip() if marker.exists() else None
    stems = [p.stem for p in figure_scripts()]
    written = sorted(  # what the figure modules write: STEM.png, STEM.csv, STEM_*.csv
        p
        for p in out.iterdir()
        if any(p.name.startswith(stem) and p.suffix in (".png", ".csv") for stem in stems)
    )
    # the output folders' one rule: in a folder giftlab did not mark, each must be giftlab's
    marked = size is not None
    check_names(out, [p.name for p in written], ours=lambda p: marked or _figure_file_of_giftlab(p))
    holds_figures = any(p.suffix == ".png" for p in written)
    if quick and (size == "full" or (size is None and holds_figures)):
        raise InputError(
            f"--quick would replace the full-size figures in {out}: give another --out "
            "(the default for --quick is runs/figures-quick)"
        )
    marker.write_text(("quick" if quick else "full") + "\n")


def _figure_file_of_giftlab(path: Path) -> bool:
    """A figure file giftlab wrote before the folder was marked: a CSV opened by its provenance
    lines, or a PNG beside one."""

    def provenance_csv(csv: Path) -> bool:
        try:
            with csv.open(encoding="utf-8") as f:
                return f.readline().startswith("# code_version:")
        except (OSError, UnicodeDecodeError):
            return False

    return provenance_csv(path if path.suffix == ".csv" else path.with_suffix(".csv"))


def regenerate(out: Path, quick: bool = False, log=print) -> list[dict]:
    """Run every figure module in its own process; returns [{script, seconds, png}] and raises
    if one fails."""
    out = Path(out).resolve()
    prepare_figure_folder(out, quick)
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
