"""The house rule: theory imports no torch and no losses; losses/diagnostics never import theory."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "giftlab"


def _imports(folder: Path) -> set[tuple[str, str]]:
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {(str(path), a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add((str(path), node.module))
    return found


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("theory", ("torch", "giftlab.losses", "giftlab.diagnostics", "giftlab.train")),
        ("losses", ("giftlab.theory",)),
        ("diagnostics", ("giftlab.theory",)),
        ("rl", ("giftlab.train",)),  # shared plumbing lives in giftlab.runtime
        ("runtime", ("giftlab.train", "giftlab.rl", "giftlab.cli")),
        ("reports", ("giftlab.cli",)),
    ],
)
def test_import_direction(package, forbidden):
    folder = ROOT / package
    if not folder.exists():
        pytest.skip(f"giftlab/{package} does not exist yet")
    bad = [
        (p, m)
        for p, m in _imports(folder)
        if any(m == f or m.startswith(f + ".") for f in forbidden)
    ]
    assert not bad, f"forbidden imports: {bad}"


def test_the_checker_sees_imports(tmp_path):
    """Guard against a checker that finds nothing: it must see a planted import."""
    (tmp_path / "m.py").write_text("import torch\nfrom giftlab.theory import x\n")
    mods = {m for _, m in _imports(tmp_path)}
    assert {"torch", "giftlab.theory"} <= mods


def _package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "giftlab" else module


def _private_imports(root: Path) -> list[tuple[str, str]]:
    """(file, 'module.name') for every `from giftlab.X import _name` and every import of a
    giftlab module whose own name is private, when the importer lives in another package."""
    bad = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
        here = _package_of(".".join(rel.parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.module):
                continue
            mod = node.module
            if not mod.startswith("giftlab") or _package_of(mod) == here:
                continue
            private_module = any(p.startswith("_") for p in mod.split("."))
            for alias in node.names:
                dunder = alias.name.startswith("__") and alias.name.endswith("__")
                if private_module or (alias.name.startswith("_") and not dunder):
                    bad.append((str(path), f"{mod}.{alias.name}"))
    return bad


def test_no_private_name_is_imported_across_packages():
    roots = [ROOT, ROOT.parent / "scripts"]
    bad = [b for r in roots for b in _private_imports(r)]
    assert not bad, f"private names imported across packages: {bad}"


def test_the_cli_is_imported_by_nobody_in_the_package():
    bad = [(p, m) for p, m in _imports(ROOT) if m == "giftlab.cli" and not p.endswith("cli.py")]
    assert not bad, bad


def test_the_private_import_checker_sees_one(tmp_path):
    pkg = tmp_path / "giftlab" / "rl"
    pkg.mkdir(parents=True)
    (pkg / "m.py").write_text("from giftlab.train.loop import _objective_sum\n")
    assert _private_imports(tmp_path / "giftlab") == [
        (str(pkg / "m.py"), "giftlab.train.loop._objective_sum")
    ]
