"""The notebooks run top to bottom (nbclient) against small runs made here, and are stored without outputs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from datafree.pipeline import distill_from_config
from tests.conftest import save_random_teacher, tiny_config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture
def kernel(tmp_path, monkeypatch) -> str:
    """A kernelspec for this very interpreter, so a fresh clone needs nothing but `pip install -r requirements.txt`."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "datafree-test"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "datafree test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "jupyter" / "runtime"))  # connection files
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return "datafree-test"


@pytest.fixture
def two_runs(tmp_path) -> list[Path]:
    from accelerate.state import AcceleratorState, GradientState

    runs = []
    for seed in (0, 1):
        config = tiny_config(tmp_path / f"run{seed}", train={"seed": seed})
        save_random_teacher(config)
        distill_from_config(config)
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        runs.append(Path(config.train.output_dir))
    return runs


def _execute(name: str, kernel: str) -> nbformat.NotebookNode:
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(nb, kernel_name=kernel, timeout=300, resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    return nb


def _outputs(nb) -> tuple[str, int]:
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", ""))
            images += "image/png" in out.get("data", {})
    return "".join(text), images


def test_notebooks_are_stored_without_outputs_and_read_the_run_from_the_environment():
    assert {p.name for p in NOTEBOOKS} >= {"synthetic_samples.ipynb", "training_curves.ipynb"}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.outputs == [] and c.execution_count is None for c in code), f"{path.name} has outputs"
        assert "os.environ.get(\"DATAFREE_RUN" in code[0].source, path.name


@pytest.mark.slow
def test_notebooks_execute_against_small_runs(two_runs, kernel, monkeypatch):
    monkeypatch.setenv("DATAFREE_RUN", str(two_runs[0]))
    monkeypatch.setenv("DATAFREE_N", "200")
    monkeypatch.setenv("DATAFREE_RUNS", os.pathsep.join(str(p) for p in two_runs))

    text, images = _outputs(_execute("synthetic_samples.ipynb", kernel))
    assert str(two_runs[0]) in text and "effective classes" in text
    assert images == 4  # per-class grid, balance + confidence, nearest real images, interpolation

    text, images = _outputs(_execute("training_curves.ipynb", kernel))
    assert "2 runs" in text and "run0/run" in text and "run1/run" in text
    assert images == 3  # accuracy, loss terms, teacher view
