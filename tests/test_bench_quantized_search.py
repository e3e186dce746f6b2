"""runs/bench_quantized.py and runs/bench_search.py --smoke: every row runs through the recipe and lands in the table."""

from __future__ import annotations

import json


def test_quantized_rows_run_split_over_invocations_and_fill_one_table(tmp_path):
    import runs.bench_quantized as bench

    common = ["--smoke", "--seeds", "1", "--output-root", str(tmp_path)]
    assert bench.main([*common, "--rows", "speq_add"]) == 0
    assert bench.main([*common, "--rows", "ternary_real"]) == 0
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


def test_search_bench_compares_hand_designed_and_found_students_at_the_budget(tmp_path):
    import runs.bench_search as bench

    assert bench.main(["--smoke", "--seeds", "1", "--budgets", "0.5", "--output-root", str(tmp_path)]) == 0
    hand, searched = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert (hand["kind"], hand["flops"], hand["params"]) == ("hand", 70_600, 6_785)  # LeNet-5 at 2-5-40-28
    assert searched["kind"] == "searched" and searched["flops"] <= 0.5 * bench.LENET5_HALF_FLOPS
    assert searched["search_s"][0] > 0 and (tmp_path / "searched_0.5" / "seed_0" / "distill" / "report.md").exists()


def test_a_diverged_search_is_named_in_its_row_and_the_other_seeds_still_run(tmp_path, monkeypatch):
    import runs.bench_search as bench
    import runs.search_student as search
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
