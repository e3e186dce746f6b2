import pytest
"""The loss-zoo comparison script runs every registered feature loss through the real trainer."""

import json

from datafree.distill import list_losses
from tests.conftest import recorded, save_random_teacher, tiny_config


@pytest.mark.e2e
def test_every_feature_loss_trains_through_the_trainer(tmp_path, monkeypatch):
    import runs.compare_losses as compare

    config = tiny_config(tmp_path, train={"batch_size": 8})
    save_random_teacher(config)
    monkeypatch.setattr(compare, "load_recipe", lambda recipe: config)
    record = tmp_path / "x.json"
    assert compare.main(["--seeds", "1", "--steps", "2", "--output-root", str(tmp_path / "zoo"), "--record", str(record)]) == 0
    rows = json.loads((tmp_path / "zoo" / "results.json").read_text())["rows"]
    assert {r["objective"] for r in rows} == {"kd"} | {f"kd+{n}" for n in compare.feature_losses()}
    shipped = {name for name in list_losses() if not name.startswith("test_")}  # tests register their own
    assert set(compare.feature_losses()) | {"kd"} >= shipped - {"sparse_recoding", "hard", "speq"}  # none forgotten (hard: logits; speq: its own teacher kind)
    table = (tmp_path / "zoo" / "table.md").read_text()
    assert "| kd+nst |" in table and "±" in table
    # each feature loss logged its own term
    metrics = (tmp_path / "zoo" / "kd_nst" / "seed_0" / "metrics.jsonl").read_text().splitlines()
    assert "s_nst" in json.loads(metrics[0])
    # --record: the same per-seed figures, each row with the terms that define it, and their provenance
    data = recorded(record, "compare_losses", tmp_path)
    assert (data["seeds"], data["steps"], data["batch_size"]) == ([0], 2, 8)
    assert [r["objective"] for r in data["rows"]] == [r["objective"] for r in rows]
    for mine, theirs in zip(data["rows"], rows):
        assert (mine["final_per_seed"], mine["best_per_seed"]) == (theirs["final"], theirs["best"])
        assert mine["wall_s"] == theirs["wall_time_s"]
        assert [t["name"] for t in mine["distill"]] == mine["objective"].split("+")
    nst = next(r for r in data["rows"] if r["objective"] == "kd+nst")["distill"][1]
    assert (nst["weight"], nst["params"]) == compare.feature_losses()["nst"]


def test_a_new_loss_with_a_benchmark_entry_joins_the_comparison_without_editing_the_script():
    import runs.compare_losses as compare
    from datafree.distill import register_loss
    from datafree.distill.base import DistillLoss

    @register_loss("test_zoo_member")
    class ZooMember(DistillLoss):
        benchmark = {"weight": 2.0, "params": {}}

        def forward(self, student, teacher):
            return (student.logits - teacher.logits).pow(2).mean()

    assert compare.feature_losses()["test_zoo_member"] == (2.0, {})
    assert "kd+test_zoo_member" in compare.objectives(None)
