"""runs/check_recipes.py: the floor, the verdict table, the overrides handed to its workers, a smoke run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runs import check_recipes as cr  # noqa: E402


def test_floor_from_the_seeds_spread():
    row = cr.with_floor({"pair": "demo", "steps": 10, "runs": [{"final": 0.70}, {"final": 0.72}, {"final": 0.74}]})
    assert row["mean"] == pytest.approx(0.72) and row["std"] == pytest.approx(0.02)
    assert row["floor"] == pytest.approx(0.72 - cr.SPREAD_TIMES * 0.02)
    tight = cr.with_floor({"pair": "demo", "steps": 10, "runs": [{"final": 0.70}, {"final": 0.70}]})
    assert tight["floor"] == pytest.approx(0.70 - cr.MIN_TOLERANCE)  # agreeing seeds still leave a point


def test_verdict_names_pair_reference_and_figure():
    ref = {"pairs": [cr.with_floor({"pair": "demo", "steps": 10, "runs": [{"final": 0.80}, {"final": 0.81}, {"final": 0.79}]})]}
    lines, ok = cr.verdict([{"pair": "demo", "steps": 10, "runs": [{"final": 0.795}]}], ref)
    floor = 100 * (0.80 - max(cr.SPREAD_TIMES * 0.01, cr.MIN_TOLERANCE))
    assert ok and f"| demo | 80.00 ± 1.00 (3) | {floor:.2f} | 79.50 | ok |" in lines
    lines, ok = cr.verdict([{"pair": "demo", "steps": 10, "runs": [{"final": floor / 100 - 0.001}]}], ref)
    assert not ok and f"| demo | 80.00 ± 1.00 (3) | {floor:.2f} | {floor - 0.1:.2f} | FAIL: below the floor |" in lines
    lines, ok = cr.verdict([{"pair": "demo", "steps": 20, "runs": [{"final": 0.9}]}], ref)  # another budget
    assert not ok and "no reference for 20 steps" in lines[-1]


def test_a_small_loss_on_every_pair_fails_together():
    runs = [{"final": 0.79}, {"final": 0.80}, {"final": 0.81}]  # std 1 point on each pair
    ref = {"pairs": [cr.with_floor({"pair": p, "steps": 10, "runs": runs}) for p in ("a", "b", "c", "d")]}
    each_above_its_floor = [{"pair": p, "steps": 10, "runs": [{"final": 0.788}]} for p in ("a", "b", "c", "d")]
    lines, ok = cr.verdict(each_above_its_floor, ref)  # -1.2 points each: inside 3 std, but 1.2 > 2 x 1 / sqrt(4)
    assert not ok and all(line.endswith("| ok |") for line in lines[2:6])
    assert lines[-1].startswith("| all 4 pairs") and lines[-1].endswith("FAIL: below the floor |")
    lines, ok = cr.verdict([{**row, "runs": [{"final": 0.795}]} for row in each_above_its_floor], ref)
    assert ok  # -0.5 each: within the pooled margin


def test_workers_get_the_overrides_only():
    argv = ["--seeds", "3", "--synthesis.moment", "1.5", "--record", "--jobs=2", "--train.steps", "5",
            "--pairs", "demo", "--smoke", "--reference", "x.json", "--enforce"]
    assert cr.overrides_only(argv) == ["--synthesis.moment", "1.5", "--train.steps", "5"]


def test_short_config_is_the_recipe_with_a_small_budget(tmp_path):
    c = cr.short_config("demo", tmp_path, None)
    assert (c.preset, c.teacher.arch, c.student.arch, c.train.steps) == ("default", "lenet5", "lenet5_half", 300)
    assert c.teacher_training.epochs == 1 and c.teacher_training.images == cr.TEACHER_IMAGES
    assert c.train.max_minutes == 0 and c.teacher.checkpoint.startswith(str(tmp_path))
    assert c.runtime.label_precision == "fp32"  # not the recipe's "auto": the same labels with or without native bf16
    assert [t.name for t in c.synthesis] == [t.name for t in cr.load_toml(ROOT / "runs/zoo.toml").synthesis]


def run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}  # the parent's count; its workers compute with one thread
    return subprocess.run([sys.executable, str(ROOT / "runs" / "check_recipes.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.e2e
def test_smoke_records_checks_and_fails_a_planted_regression(tmp_path):
    ref = tmp_path / "ref.json"
    common = ["--smoke", "--pairs", "demo", "--output-root", str(tmp_path / "out"), "--reference", str(ref)]
    done = run([*common, "--record"])
    assert done.returncode == 0, done.stdout + done.stderr
    saved = json.loads(ref.read_text())
    assert saved["provenance"]["hardware"]["threads"] == 1 and saved["smoke"] is True  # each worker's, not ours
    (pair,) = saved["pairs"]
    assert pair["pair"] == "demo" and pair["steps"] == 2 and len(pair["runs"]) == 1
    figures = json.loads((tmp_path / "out" / "demo" / "figures.json").read_text())
    assert pair["runs"][0]["final"] == figures["runs"][0]["final"]
    done = run(common)  # the same code and seed: the same figure, above its own floor
    assert done.returncode == 0, done.stdout + done.stderr
    assert "check-recipes: passed" in done.stdout
    pair["floor"] = pair["runs"][0]["final"] + 0.5  # a reference the figure cannot reach
    ref.write_text(json.dumps(saved))
    done = run(common)
    assert done.returncode == 1
    assert "| demo |" in done.stdout and "FAIL: below the floor" in done.stdout
    saved["provenance"]["hardware"]["cpu"] = "another CPU"  # references of another machine kind: reported, not enforced
    ref.write_text(json.dumps(saved))
    done = run(common)
    assert done.returncode == 0 and "NOT enforced" in done.stdout and "another CPU" in done.stdout
    done = run([*common, "--enforce"])
    assert done.returncode == 1 and "FAIL: below the floor" in done.stdout


@pytest.mark.e2e
def test_bad_arguments_are_refused(tmp_path):
    done = run(["--pairs", "nope"])
    assert done.returncode == 2 and "unknown ['nope']" in done.stderr
    done = run(["--reference", str(tmp_path / "none.json"), "--pairs", "demo"])
    assert done.returncode == 2 and "no references at" in done.stderr
    done = run(["--record", "--synthesis.moment", "1.5", "--pairs", "demo", "--reference", str(tmp_path / "r.json")])
    assert done.returncode == 2 and "drop the overrides" in done.stderr
