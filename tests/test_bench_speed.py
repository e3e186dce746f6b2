"""`runs/bench_speed.py --quick` end to end in a subprocess: table printed, last line parseable. No timing asserts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_prints_table_and_speedup_line():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "runs" / "bench_speed.py"), "--quick"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert any(l.startswith("| batch | mode | img/s |") for l in lines), run.stdout
    rows = [l for l in lines if re.match(r"^\| 16 \| (fp32|cl|bf16) \|", l)]
    assert len(rows) == 3, run.stdout
    assert "failed" not in "".join(rows[:2]), run.stdout  # fp32 and cl always run; bf16 may be unsupported
    assert re.search(r"^- batch 16: [\d.]+ GFLOP", run.stdout, re.M), run.stdout
    assert "ceiling = best fwd+bwd" in run.stdout
    match = re.fullmatch(r"speedup_vs_eager_fp32: (\d+\.\d+)", lines[-1])
    assert match and float(match.group(1)) > 0, lines[-1]
