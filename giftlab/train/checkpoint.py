"""Atomic checkpoints: write ckpt-NNNNNN.tmp*/, rename it into place, then replace the `latest`
pointer file atomically. A crash at any point leaves the previous checkpoint and pointer intact."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch


def _write_atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, step: int, state: dict, keep: int) -> Path:
    """Write state (torch.save-able) as run_dir/ckpt-<step>/state.pt and point `latest` at it."""
    run_dir = Path(run_dir)
    final = run_dir / f"ckpt-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp", dir=run_dir))
    try:
        with open(tmp / "state.pt", "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _write_atomic_text(run_dir / "latest", final.name + "\n")
    kept = sorted(p for p in run_dir.glob("ckpt-??????") if p.is_dir())
    for old in kept[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = Path(run_dir) / "latest"
    if not pointer.exists():
        return None
    path = Path(run_dir) / pointer.read_text().strip()
    return path if (path / "state.pt").exists() else None


def load_checkpoint(path: Path) -> dict:
    return torch.load(Path(path) / "state.pt", map_location="cpu", weights_only=False)
