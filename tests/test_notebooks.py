"""Every notebook executes top to bottom (stored without outputs)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _run(path):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        f"{path.name} is stored with outputs"
    )
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()


@pytest.mark.parametrize(
    "path", [p for p in NOTEBOOKS if "small_model" not in p.name], ids=lambda p: p.name
)
def test_notebook_executes(path):
    _run(path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "path", [p for p in NOTEBOOKS if "small_model" in p.name], ids=lambda p: p.name
)
def test_real_model_notebook_executes(path):
    _run(path)


def test_there_are_three_notebooks():
    assert [p.name for p in NOTEBOOKS] == [
        "01_temperature.ipynb",
        "02_validate_a_variant.ipynb",
        "03_small_model_run.ipynb",
    ]
