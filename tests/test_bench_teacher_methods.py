"""runs/bench_teacher_methods.py --smoke: every teacher-side method runs through the same recipe and lands in the table."""

from __future__ import annotations

import json

import pytest

from tests.conftest import recorded


@pytest.mark.e2e
def test_smoke_runs_single_feed_sequential_feed_and_rco(tmp_path):
    import runs.bench_teacher_methods as bench

    record = tmp_path / "x.json"
    assert bench.main(["--smoke", "--seeds", "1", "--teachers", "lenet5@0,lenet5@1", "--output-root", str(tmp_path),
                       "--record", str(record)]) == 0  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    assert [t["seed"] for t in results["teachers"]] == [0, 1]
    assert [r["method"] for r in results["rows"]] == ["single", "ensemble_kd", "feed", "sfeed", "rco"]
    saved = {m: json.loads((tmp_path / m / "seed_0" / "config.json").read_text())
             for m in ("single", "ensemble_kd", "feed", "rco")}  # fmt: skip
    assert saved["feed"]["teacher"]["kind"] == "ensemble" and [d["name"] for d in saved["feed"]["distill"]] == ["kd", "feed"]
    # FEED's ablation: the same ensemble, the recipe's losses alone
    assert saved["ensemble_kd"]["teacher"] == saved["feed"]["teacher"] and [d["name"] for d in saved["ensemble_kd"]["distill"]] == ["kd"]
    assert saved["rco"]["teacher"]["kind"] == "route" and saved["single"]["teacher"]["kind"] == "single"
    best = max(results["teachers"], key=lambda t: t["teacher_acc"])["checkpoint"]
    assert saved["single"]["teacher"]["checkpoint"] == best == saved["rco"]["teacher"]["checkpoint"]
    stages = results["rows"][3]["runs"][0]["stages"]
    assert [s["teacher"]["checkpoint"] for s in stages] == [t["checkpoint"] for t in results["teachers"]]
    table = (tmp_path / "table.md").read_text()
    assert "| sfeed |" in table and "synthetic transfer set" in table
    # --record: results.json's per-seed figures, each row with the teacher side that defines it, no paths
    data = recorded(record, "bench_teacher_methods", tmp_path)
    assert data["seeds"] == [0] and data["budget"] == {"minutes": 0.02} and data["transfer"] == "synthetic"
    assert data["preset"] == saved["single"]["preset"] == "default"  # the preset the runs had, named in the table
    assert data["teachers"] == [{k: t[k] for k in ("arch", "seed", "teacher_acc")} for t in results["teachers"]]
    assert [r["method"] for r in data["rows"]] == ["single", "ensemble_kd", "feed", "sfeed", "rco"]
    assert [r["teacher_kind"] for r in data["rows"]] == ["single", "ensemble", "ensemble", "ensemble", "route"]
    assert data["rows"][1]["distill"] == ["kd"] and data["rows"][2]["distill"] == ["kd", "feed"]
    assert data["rows"][2]["teacher"] == "all"
    assert data["rows"][0]["teacher"] == data["rows"][4]["teacher"] == f"lenet5@{best_seed(results)}"
    for mine, theirs in zip(data["rows"], results["rows"]):
        assert mine["final_per_seed"] == [run["student_acc_final"] for run in theirs["runs"]] == theirs["final"]["values"]
        assert mine["best_per_seed"] == [run["student_acc_best"] for run in theirs["runs"]] == theirs["best"]["values"]
        assert mine["steps_per_seed"] == [run["steps"] for run in theirs["runs"]] and mine["wall_s"] == theirs["wall_s"]


def best_seed(results: dict) -> int:
    return max(results["teachers"], key=lambda t: t["teacher_acc"])["seed"]


def test_equal_wall_time_steps_come_from_the_timed_ratio(monkeypatch):
    import datafree.pipeline as pipeline
    import runs.bench_teacher_methods as bench
    from datafree.config import Config

    seconds = {"single": 0.5, "feed": 2.0, "rco": 0.6}
    monkeypatch.setattr(pipeline, "seconds_per_step", lambda c: seconds[c.name] if c.name in seconds else 0.25)
    configs = {name: Config(name=name) for name in ("single", "feed", "rco")}
    sfeed = Config(name="sfeed")
    sfeed.teacher.kind, sfeed.teacher.members = "ensemble", [{"arch": "lenet5", "checkpoint": "a"}] * 3
    configs["sfeed"] = sfeed  # its three stages are timed as single-teacher recipes: 3 x 0.25 s per step of all
    steps = bench.equal_time_steps(configs, 100)  # single's 100 steps take 50 s
    assert steps == {"single": 100, "feed": 25, "rco": 83, "sfeed": 67}
