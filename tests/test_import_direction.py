"""The house rules of the layout (README, "Layout"): every import of a giftlab module points down
the layers of LAYERS (no arrow up, no circle), plus the named rules: theory imports no torch and
nothing of giftlab's torch side; losses never import theory, train, rl or runtime; runtime is
plumbing and imports no domain package; integrations never import train; plots never import
theory or train; nothing imports the CLI; no private name crosses a package."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "giftlab"

# giftlab's packages (and top-level modules) from the bottom up: a module imports only from
# layers below its own. Two packages of one layer never import each other (train and rl, the
# pipeline and the integrations, the planner and the figures).
LAYERS = (
    ("errors", "checks"),
    ("flatconfig", "integrity", "provenance"),
    ("config", "variants", "share", "outputs"),
    ("runtime", "data", "diagnostics", "losses", "theory", "results", "plots"),
    ("stats", "rewards", "models"),
    ("engine",),
    ("refcache",),
    ("train", "rl"),
    ("integrations", "pipeline"),
    ("planner", "figures"),
    ("reports",),
    ("cli",),
)
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
TORCH_SIDE = tuple(
    f"giftlab.{p}"
    for p in ("losses", "models", "engine", "runtime", "train", "rl", "refcache", "diagnostics")
)
# what runtime (plumbing) may not import: every package that knows about objectives, models or data
DOMAIN = tuple(
    f"giftlab.{p}"
    for names in LAYERS
    for p in names
    if p
    not in (
        "errors",
        "checks",
        "provenance",
        "integrity",
        "outputs",
        "flatconfig",
        "config",
        "runtime",
    )
)


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
        ("theory", ("torch", *TORCH_SIDE)),
        ("losses", ("giftlab.theory", "giftlab.train", "giftlab.rl", "giftlab.runtime")),
        ("diagnostics", ("giftlab.theory",)),
        ("rl", ("giftlab.train",)),  # shared plumbing lives in giftlab.runtime
        ("runtime", DOMAIN),
        ("integrations", ("giftlab.train",)),
        ("plots", ("giftlab.theory", "giftlab.train")),
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


def _giftlab_edges(root: Path) -> set[tuple[str, str]]:
    """(importer's package, imported package) for every import of one giftlab package by another
    (top-level and inside functions alike); giftlab's own __init__ (the version) is left out."""
    edges = set()
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).with_suffix("").parts
        here = rel[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                continue  # relative imports stay inside a package
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                parts = name.split(".")
                if parts[0] == "giftlab" and len(parts) > 1 and parts[1] != here:
                    edges.add((here, parts[1]))
    return edges


def test_every_package_has_a_layer():
    found = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()}
    found = {f for f in found if not f.startswith(("_", ".")) and f != "py"}
    assert found <= set(LAYER), f"packages with no layer in LAYERS: {sorted(found - set(LAYER))}"


def test_no_arrow_up_and_no_circle():
    """Every import points to a lower layer: so no package imports one above it or beside it,
    and no circle of imports can exist."""
    bad = [
        f"giftlab.{a} (layer {LAYER[a]}) imports giftlab.{b} (layer {LAYER.get(b)})"
        for a, b in sorted(_giftlab_edges(ROOT))
        if b in LAYER and LAYER[b] >= LAYER[a]
    ]
    assert not bad, "\n".join(bad)


def test_the_layer_checker_sees_an_arrow_up(tmp_path):
    """Guard: a planted import of the pipeline from the figures is found."""
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "m.py").write_text("def f():\n    from giftlab.pipeline import x\n")
    assert ("figures", "pipeline") in _giftlab_edges(tmp_path)
