import pytest
"""A real 2-process CPU run (gloo) through `accelerate launch`, as a user would start it."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def launch(tmp_path: Path, *extra: str) -> list[dict]:
    """tests/ddp_worker.py on 2 CPU processes; each rank's report."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path), *extra]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]


@pytest.mark.e2e
def test_route_plateau_schedule_switches_anchors_at_the_same_step_on_every_rank(tmp_path):
    ranks = launch(tmp_path, "route")
    # the plateau rule reads the logged loss, which differs per rank; averaged over processes, both ranks hold the
    # same evidence, hence the same anchor and counters (rank-local losses would give different "best" values)
    assert ranks[0]["schedule"] == ranks[1]["schedule"] and ranks[0]["schedule"]["index"] == 3
    assert ranks[0]["schedule"]["best"] is not None


@pytest.mark.e2e
def test_two_process_cpu_run_agrees_on_weights_and_schedule(tmp_path):
    ranks = launch(tmp_path)
    assert all(r["num_processes"] == 2 and r["results_num_processes"] == 2 for r in ranks)
    assert ranks[0]["checksum"] == ranks[1]["checksum"]  # DDP kept the replicas identical
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # step schedule, milestone at 50% of 6 steps: an LR scheduler stepped twice per step (once per process
    # on a prepared scheduler) would already have decayed at step 2
    lr = {l["step"]: l["lr_s"] for l in lines}
    assert abs(lr[2] - 0.002) < 1e-12 and abs(lr[3] - 0.0002) < 1e-12
    assert lines[-1]["images"] == 6 * 16 * 2  # both ranks generate their own batch
    assert sum(lines[0]["class_hist"]) == 2 * 16  # histogram over the global batch
