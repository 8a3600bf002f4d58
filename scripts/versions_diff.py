"""The installed versions against constraints.txt (the exact versions CI last passed with).

    python scripts/versions_diff.py constraints.txt            # what differs, one line each
    python scripts/versions_diff.py --write constraints.txt     # pin this environment's versions

Run with the interpreter of the environment to read (`make test-latest` and `make constraints` do).
Left out of the pins: giftlab itself, pip/setuptools/wheel, and torch with the packages its build
fixes (triton, nvidia-*): a GPU user brings a CUDA torch, and a CPU pin must not replace it.
Each pin carries the Python version CI ran (`; python_version == "3.11"`), so another Python
resolves from the ranges of pyproject.toml instead of failing on a wheel that does not exist.
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

SKIP = {"giftlab", "pip", "setuptools", "wheel", "torch", "triton"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    out = {}
    for dist in metadata.distributions():
        name = _norm(dist.metadata["Name"] or "")
        if name and name not in SKIP and not name.startswith("nvidia-"):
            out[name] = dist.version
    return out


def read_pins(path: Path) -> dict[str, str]:
    pins = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if "==" not in line:
            sys.exit(f"{path}:{n}: expected NAME==VERSION, got {line!r}")
        name, version = line.split("==", 1)
        pins[_norm(name)] = version.strip()
    return pins


def write_pins(path: Path, versions: dict[str, str]) -> None:
    py = ".".join(platform.python_version_tuple()[:2])
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "none"
    head = [
        "# The exact versions CI last passed with: `make` installs these (`make CONSTRAINTS=` opts",
        "# out). Written by `make constraints` (scripts/versions_diff.py) on Python "
        f"{platform.python_version()}, {platform.machine()}, torch {torch_version} (not pinned).",
    ]
    lines = [f'{k}=={v} ; python_version == "{py}"' for k, v in sorted(versions.items())]
    path.write_text("\n".join(head + lines) + "\n")
    print(f"{path}: {len(lines)} pins")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("constraints", type=Path)
    ap.add_argument("venv", nargs="?", help="(informational) the environment's folder")
    ap.add_argument("--write", action="store_true", help="write the pins instead of comparing")
    args = ap.parse_args(argv)
    if args.write:
        write_pins(args.constraints, installed())
        return 0
    if not args.constraints.exists():
        print(f"{args.constraints}: no such file; nothing to compare")
        return 0
    pins, have = read_pins(args.constraints), installed()
    changed = [
        f"  {k}: {pins[k]} (CI tested) -> {have[k]}"
        for k in sorted(pins)
        if k in have and have[k] != pins[k]
    ]
    added = [f"  {k}: not pinned -> {have[k]}" for k in sorted(set(have) - set(pins))]
    where = f" in {args.venv}" if args.venv else ""
    if changed or added:
        print(f"versions{where} that differ from {args.constraints}:")
        print("\n".join(changed + added))
    else:
        print(f"every version{where} is the one {args.constraints} pins")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
