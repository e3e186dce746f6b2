"""runs/ablate.py: every variant applies its overrides, runs, and lands in the table with its timings."""

from __future__ import annotations

import json

import pytest

from tests.conftest import save_random_teacher, tiny_config


@pytest.mark.e2e
def test_variants_apply_their_overrides_and_fill_the_table(tmp_path, monkeypatch):
    import runs.ablate as ablate

    config = tiny_config(tmp_path, train={"batch_size": 8})
    save_random_teacher(config)
    monkeypatch.setattr(ablate, "load_recipe", lambda recipe: config)
    chosen = ["dafl", "recipe", "student-5-same"]  # a ladder step, the recipe, a cost knob
    assert ablate.main(["--steps", "2", "--only", ",".join(chosen), "--output-root", str(tmp_path / "abl")]) == 0
    rows = json.loads((tmp_path / "abl" / "results.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == chosen
    for row in rows:  # each row is its run's own results.json, and its curve the run's evaluations
        run = json.loads((tmp_path / "abl" / row["variant"] / "results.json").read_text())
        assert row["final"] == run["student_acc_final"] and row["wall_time_s"] == run["wall_time_s"]
        assert row["curve"] and row["curve"][-1][1] == run["student_acc_final"]
    # the dafl run really ran pure DAFL: its saved config has the BN output and no priors
    saved = json.loads((tmp_path / "abl" / "dafl" / "config.json").read_text())
    weights = {t["name"]: t["weight"] for t in saved["synthesis"]}
    assert saved["generator"]["output"] == "bn" and weights.get("moment", 0.0) == 0.0 and weights["onehot"] == 1.0
    assert saved["train"]["steps"] == 2 and saved["generator"]["width"] == 64
    table = (tmp_path / "abl" / "table.md").read_text()
    assert "| student-5-same |" in table


def test_time_to_reads_the_first_evaluation_at_or_above_the_target():
    from runs.ablate import time_to

    curve = [(10.0, 0.3), (20.0, 0.55), (30.0, 0.5), (40.0, 0.7)]
    assert time_to(curve, 0.5) == 20.0 and time_to(curve, 0.7) == 40.0 and time_to(curve, 0.8) is None


@pytest.mark.e2e
def test_unknown_variant_is_refused(tmp_path):
    import runs.ablate as ablate

    with pytest.raises(SystemExit):
        ablate.main(["--only", "nope", "--output-root", str(tmp_path)])
