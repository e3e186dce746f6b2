"""runs/bench_quantized.py and runs/bench_search.py --smoke: every row runs through the recipe and lands in the table."""

from __future__ import annotations

import json

import pytest

from tests.conftest import recorded


@pytest.mark.e2e
def test_quantized_rows_run_split_over_invocations_and_fill_one_table(tmp_path):
    import runs.bench_quantized as bench

    common = ["--smoke", "--seeds", "1", "--output-root", str(tmp_path)]
    assert bench.main([*common, "--rows", "speq_add"]) == 0
    record = tmp_path / "x.json"
    assert bench.main([*common, "--rows", "ternary_real", "--record", str(record)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["row"] for r in results["rows"]] == ["speq_add", "ternary_real"]  # both invocations' rows, ROWS order
    speq = json.loads((tmp_path / "speq_add" / "seed_0" / "config.json").read_text())
    assert speq["teacher"]["kind"] == "speq" and [d["name"] for d in speq["distill"]] == ["kd", "speq"]
    assert speq["student"]["wrap"][0]["params"] == {"bits": 4, "act_bits": 4}
    real = json.loads((tmp_path / "ternary_real" / "seed_0" / "config.json").read_text())
    assert real["train"]["transfer"] == "real"
    for row in results["rows"]:
        assert row["onnx_file"] == "student_int8.onnx" and row["onnx_matches"]
    assert "| speq_add |" in (tmp_path / "table.md").read_text()
    # --record: the table's rows (both invocations'), per seed as results.json has them, with their student side
    data = recorded(record, "bench_quantized", tmp_path)
    assert data["seeds"] == [0] and data["steps"] == 4 and data["teacher"]["teacher_acc"] == results["teacher"]["teacher_acc"]
    assert data["preset"] == speq["preset"] == "default"
    assert [r["row"] for r in data["rows"]] == ["speq_add", "ternary_real"]
    # the table's line names both commands: this one, and the earlier one that made the speq_add row
    assert "--rows ternary_real" in data["provenance"]["command"]
    assert [p["command"].split("--rows ")[1].split()[0] for p in data["earlier"]] == ["speq_add"]
    from datafree.bench.common import provenance_line
    assert provenance_line(data).count("--rows ") == 2
    assert data["rows"][0]["quantize"] == {"bits": 4, "act_bits": 4} and data["rows"][0]["distill"] == ["kd", "speq"]
    assert (data["rows"][0]["teacher_kind"], data["rows"][1]["transfer"]) == ("speq", "real")
    for mine, theirs in zip(data["rows"], results["rows"]):
        assert mine["seeds"] == [0] and mine["steps_per_seed"] == [run["steps"] for run in theirs["runs"]] == [4]
        assert mine["final_per_seed"] == [run["student_acc_final"] for run in theirs["runs"]] == theirs["final"]["values"]
        assert mine["best_per_seed"] == [run["student_acc_best"] for run in theirs["runs"]] == theirs["best"]["values"]
        assert (mine["onnx_bytes"], mine["latency_ms_b1"], mine["wall_s"]) == (theirs["onnx_bytes"], theirs["latency_ms_b1"], theirs["wall_s"])


def test_quantized_anybits_row_is_speq_add_with_the_old_draw():
    """speq_add_anybits differs from speq_add only by the self-teacher's fixed list of widths (under the target too)."""
    import runs.bench_quantized as bench
    from datafree.bench.args import load_recipe

    base = load_recipe("zoo")
    paper, old = bench.row_config(base, "speq_add"), bench.row_config(base, "speq_add_anybits")
    assert paper.teacher.params == {} and old.teacher.params == {"choices": [2, 3, 4, 5, 6, 7, 8, 0]}
    old.teacher.params, old.name = {}, paper.name
    assert old == paper
    assert bench.row_config(base, "float").teacher.params == base.teacher.params


@pytest.mark.e2e
def test_search_bench_compares_hand_designed_and_found_students_at_the_budget(tmp_path):
    import runs.bench_search as bench

    record = tmp_path / "x.json"
    assert bench.main(["--smoke", "--seeds", "1", "--budgets", "0.5", "--output-root", str(tmp_path), "--record", str(record)]) == 0
    hand, searched = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert (hand["kind"], hand["flops"], hand["params"]) == ("hand", 70_600, 6_785)  # LeNet-5 at 2-5-40-28
    assert searched["kind"] == "searched" and searched["flops"] <= 0.5 * bench.LENET5_HALF_FLOPS
    assert searched["search_s"][0] > 0 and (tmp_path / "searched_0.5" / "seed_0" / "distill" / "report.md").exists()
    # --record: both rows per seed as results.json has them, with the budget and the student that define them
    data = recorded(record, "bench_search", tmp_path)
    assert (data["seeds"], data["steps"], data["search_steps"]) == ([0], 4, 4)
    assert data["preset"] == json.loads((tmp_path / "hand_0.5" / "seed_0" / "config.json").read_text())["preset"] == "default"
    for mine, theirs in zip(data["rows"], (hand, searched), strict=True):
        assert {k: mine[k] for k in ("kind", "budget", "student", "flops", "params")} == {
            k: theirs[k] for k in ("kind", "budget", "student", "flops", "params")}
        assert (mine["seeds"], mine["final_per_seed"], mine["best_per_seed"]) == ([0], theirs["final"]["values"], theirs["best"]["values"])
        assert len(mine["final_per_seed"]) == 1 and (mine["search_s"], mine["distill_s"]) == (theirs["search_s"], theirs["distill_s"])
    assert data["rows"][1]["search_steps"] == searched["search_steps"] and data["rows"][1]["diverged"] == []


@pytest.mark.e2e
def test_a_diverged_search_is_named_in_its_row_and_the_other_seeds_still_run(tmp_path, monkeypatch):
    import runs.bench_search as bench
    import datafree.cli.search as search
    from datafree.trainer import NonFiniteLossError

    original = search.run

    def run(config, settings, root):
        if config.train.seed == 0:
            raise NonFiniteLossError("loss term(s) ['s_kd'] became NaN/inf before step 3")
        return original(config, settings, root)

    monkeypatch.setattr(search, "run", run)
    assert bench.main(["--smoke", "--seeds", "2", "--budgets", "0.5", "--output-root", str(tmp_path)]) == 0
    searched = json.loads((tmp_path / "results.json").read_text())["rows"][1]
    assert searched["diverged"] == [0] and len(searched["search_s"]) == 1 and "diverged on seed(s) [0]" in searched["student"]


@pytest.mark.e2e
def test_search_bench_l1_sensitivity_gives_a_row_per_fixed_weight(tmp_path):
    """--l1 a,b --fixed-l1: one searched row per weight, each search run at that weight with lambda fixed (patience
    0), in folders of their own; no hand row with --kinds searched."""
    import runs.bench_search as bench

    record = tmp_path / "x.json"
    assert bench.main(["--smoke", "--seeds", "1", "--budgets", "0.5", "--kinds", "searched", "--l1", "0.5,2",
                       "--fixed-l1", "--output-root", str(tmp_path), "--record", str(record)]) == 0  # fmt: skip
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [(r["kind"], r["l1"], r["l1_fixed"]) for r in rows] == [("searched", 0.5, True), ("searched", 2.0, True)]
    for weight in ("0.5", "2"):
        settings = json.loads((tmp_path / f"searched_0.5_l1_{weight}_fixed" / "seed_0" / "search_results.json")
                              .read_text())["search"]["settings"]  # fmt: skip
        assert (settings["l1"], settings["patience"]) == (float(weight), 0)
    for r in rows:
        assert r["reached"] == [r["flops"] <= 0.5 * bench.LENET5_HALF_FLOPS]
    table = (tmp_path / "table.md").read_text()
    assert "| 0.5 fixed |" in table and "| 2 fixed |" in table
    data = recorded(record, "bench_search", tmp_path)
    assert [(r["l1"], r["l1_fixed"], r["reached"]) for r in data["rows"]] == [(r["l1"], True, r["reached"]) for r in rows]


def test_search_bench_refuses_bad_kinds_and_weights(capsys):
    import runs.bench_search as bench

    for bad in (["--kinds", "both"], ["--l1", "0.1,x"], ["--l1", "0,0.1"]):
        with pytest.raises(SystemExit) as stop:
            bench.main(["--smoke", *bad])
        assert stop.value.code == 2
        assert bad[0] in capsys.readouterr().err
