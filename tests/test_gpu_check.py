"""runs/gpu_check.py --device cpu --smoke end to end in a subprocess: every row measured, from real runs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import recorded

ROOT = Path(__file__).resolve().parents[1]


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]


@pytest.mark.e2e
def test_smoke_measures_every_row_from_real_runs(tmp_path):
    out, record = tmp_path / "x.json", tmp_path / "record.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "runs" / "gpu_check.py"), "--device", "cpu", "--smoke",
               "--output-root", str(tmp_path / "runs"), "--out", str(out), "--record", str(record)]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r["run"]: r for r in report["rows"]}
    assert list(rows) == ["fmnist fp32", "fmnist bf16", "cifar10 b2", "cifar10 b4"]
    # the smoke sizes, run in full: Fashion-MNIST 4 steps, each CIFAR-10 batch 3, every step logged
    assert [row["steps"] for row in rows.values()] == [4, 4, 3, 3]
    assert (tmp_path / "runs" / "fmnist-teacher" / "teacher.safetensors").exists()  # trained first, no --teacher
    assert report["smoke"] is True and "torch" in report["hardware"]
    assert report["matmul"]["flops_per_s"] > 0 and math.isfinite(report["matmul"]["flops_per_s"])
    assert report["table"] in run.stdout  # the same markdown table is printed
    for name, row in rows.items():
        run_dir = Path(row["output_dir"])
        assert run_dir.is_relative_to(tmp_path / "runs"), run_dir  # never the recipes' outputs/
        assert math.isfinite(row["images_per_s"]) and row["images_per_s"] > 0, name
        assert f"| {name} |" in report["table"]
        lines = _metrics(run_dir)  # images/s is recomputed here from the run's own log, warm-up line skipped
        first, last = lines[1], lines[-1]
        expected = (last["images"] - first["images"]) / (last["time_s"] - first["time_s"])
        assert math.isclose(row["images_per_s"], expected, rel_tol=1e-9), name
        results = json.loads((run_dir / "results.json").read_text())
        config = json.loads((run_dir / "config.json").read_text())
        assert row["precision"] == results["mixed_precision"], name
        assert results["steps"] == row["steps"] == config["train"]["steps"] and config["data"]["name"] == "fake"
        assert [l["step"] for l in lines] == list(range(1, row["steps"] + 1)), name  # log_every 1 at these sizes
        assert lines[-1]["images"] > lines[1]["images"] > 0, name
        assert (run_dir / "report.md").exists(), name

    # Fashion-MNIST: the same recipe and seed, fp32 vs bf16 autocast, accuracies from real evaluations
    fp32, bf16 = rows["fmnist fp32"], rows["fmnist bf16"]
    for row, precision in ((fp32, "no"), (bf16, "bf16")):
        config = json.loads((Path(row["output_dir"]) / "config.json").read_text())
        assert config["runtime"]["mixed_precision"] == precision and row["precision"] == precision
        assert config["teacher"]["checkpoint"].startswith(str(tmp_path))  # trained here, not outputs/fmnist's
        evaluated = [l["student_acc"] for l in _metrics(Path(row["output_dir"])) if "student_acc" in l]
        assert evaluated, "the smoke run must evaluate the student during training"
        assert row["acc_best"] == max(evaluated)
        assert isinstance(row["acc_final"], float) and 0.0 <= row["acc_final"] <= 1.0
        assert isinstance(row["teacher_acc"], float) and row["batch"] == 8
    assert fp32["steps"] == bf16["steps"]

    # CIFAR-10 step: default precision (fp32 on CPU), FLOPs linear in the batch, fraction of the matmul rate
    small, large = rows["cifar10 b2"], rows["cifar10 b4"]
    assert (small["batch"], large["batch"]) == (2, 4) and small["precision"] == large["precision"] == "no"
    assert small["step_flops"] > 1e9  # ResNet-34 + ResNet-18 + generator, forward and backward, two images
    assert math.isclose(large["step_flops"], 2 * small["step_flops"])
    for row in (small, large):
        assert row["peak_mem_gib"] is None  # CPU: n/a
        lines = _metrics(Path(row["output_dir"]))
        steps_per_s = (lines[-1]["step"] - lines[1]["step"]) / (lines[-1]["time_s"] - lines[1]["time_s"])
        assert math.isclose(row["achieved_flops_per_s"], row["step_flops"] * steps_per_s, rel_tol=1e-9)
        assert math.isclose(row["matmul_fraction"], row["achieved_flops_per_s"] / report["matmul"]["flops_per_s"])
        assert not any("student_acc" in l for l in lines[:-1])  # no evaluation inside the timed lines
    # the FLOP count's 1-step and 2-step runs, at the first batch
    for steps in (1, 2):
        counted = json.loads((tmp_path / "runs" / f"cifar10-b2-flops{steps}" / "results.json").read_text())
        assert counted["steps"] == steps

    # --record: the same rows' figures, without their run folders, with the provenance of this command
    data = recorded(record, "gpu_check", tmp_path)
    assert data["smoke"] is True and data["teacher"] == "trained here" and data["matmul"] == report["matmul"]
    assert set(data["seeds"]) == {"fmnist", "cifar10"} and all(isinstance(v, int) for v in data["seeds"].values())
    assert data["provenance"]["hardware"]["threads"] == 1 and data["provenance"]["hardware"]["accelerator"] is None
    assert [r["run"] for r in data["rows"]] == list(rows)
    for mine in data["rows"]:
        theirs = rows[mine["run"]]
        assert mine == {k: v for k, v in theirs.items() if k != "output_dir"}, mine["run"]
