"""Provenance stamped into every CSV, JSON and run folder: code version, versions, machine."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

# Generated outputs, committed beside the code: writing them must not mark the code as changed.
OUTPUT_DIRS = ("paper_figures",)


def code_version() -> str:
    """The commit of the giftlab checkout (`git describe --always`), with "-dirty" when a tracked
    file outside the generated outputs (paper_figures/) differs from it; the package version
    outside a checkout."""
    root = Path(__file__).resolve().parents[1]

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5, check=True
        )

    try:
        version = git("describe", "--always").stdout.strip()
        excluded = [f":(exclude){d}" for d in OUTPUT_DIRS]
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", *excluded)
        return version + ("-dirty" if changed.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        from giftlab import __version__

        return __version__


def provenance() -> dict[str, str]:
    """A flat dict: code version, UTC time, Python, numpy (and torch when importable), machine."""
    import numpy

    info = {
        "code_version": code_version(),
        "time_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": str(__import__("os").cpu_count()),
    }
    import sys
    from importlib import metadata

    try:
        info["torch"] = metadata.version("torch")
    except metadata.PackageNotFoundError:
        pass
    torch = sys.modules.get("torch")  # the device only when torch is already in use
    if torch is not None:
        info["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return info


def csv_header_comment() -> str:
    """Provenance as '# key: value' lines, to open a CSV file with."""
    return "".join(f"# {k}: {v}\n" for k, v in provenance().items())


def write_csv(path, rows: list[dict]) -> None:
    """rows -> CSV opened by '# key: value' provenance lines (read with comment='#')."""
    import csv

    from giftlab.errors import writing

    path = Path(path)
    with writing(path):  # a full disk names the file
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            f.write(csv_header_comment())
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
