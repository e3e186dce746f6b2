"""runs/bench_teachers.py --smoke: every pair trains its teacher, distills with the SAME recipe, lands in the table."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT


@pytest.mark.e2e
def test_smoke_runs_each_pair_with_the_unchanged_recipe_and_fills_the_table(tmp_path):
    import datafree.bench.zoo as bench
    from datafree.config import load_toml

    pairs = "lenet5:lenet5_half,resnet20:resnet8_narrow@fashion-mnist-28"
    assert bench.main(["--smoke", "--seeds", "1", "--pairs", pairs, "--output-root", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["pair"] for r in results["rows"]] == ["lenet5-lenet5_half", "resnet20-resnet8_narrow@fashion-mnist-28"]
    assert [r["image_size"] for r in results["rows"]] == [32, 28]  # the zoo at both sizes
    assert results["rows"][1]["uses"][0] == "the teacher's BatchNorm running statistics"  # the default preset reads them
    recipe = load_toml(ROOT / "runs" / "zoo.toml")  # the default --recipe
    for row in results["rows"]:
        run = row["runs"][0]
        assert row["final"]["mean"] == run["student_acc_final"] and len(run["class_coverage"]) == 10
        assert row["steps"][0] == run["steps"] >= 1  # fixed by the wall-time budget before step 0
        saved = json.loads((tmp_path / row["pair"] / "seed_0" / "config.json").read_text())
        assert [t["name"] for t in saved["synthesis"]] == [t.name for t in recipe.synthesis]  # no per-pair tuning
        assert saved["student"]["arch"] == row["student"] and saved["train"]["max_minutes"] > 0
    table = (tmp_path / "table.md").read_text()
    assert "| lenet5 -> lenet5_half | 32x32 |" in table and "| resnet20 -> resnet8_narrow | 28x28 |" in table
    assert "BN statistics, recorded per-class stats, recorded per-class penultimate, recorded per-class spread between images |" in table and "python runs/bench_teachers.py --smoke" in table
    (tmp_path / "table.md").unlink()
    assert bench.main(["--table-only", "--output-root", str(tmp_path)]) == 0
    assert (tmp_path / "table.md").read_text() == table  # the table is rebuilt from results.json alone
    # pairs run as two processes (one per core) join one table: split the rows, merge them back
    for i, name in enumerate(("part_a", "part_b")):
        (tmp_path / name).mkdir()
        part = {**results, "rows": [results["rows"][i]], "command": f"cmd {name}"}
        (tmp_path / name / "results.json").write_text(json.dumps(part))
    merged = tmp_path / "merged"
    parts = f"{tmp_path / 'part_a'},{tmp_path / 'part_b'}"
    assert bench.main(["--table-only", "--merge", parts, "--output-root", str(merged)]) == 0
    text = (merged / "table.md").read_text()
    assert text.split("\n\n")[0] == table.split("\n\n")[0]  # the same rows in the same order
    assert "`cmd part_a` and `cmd part_b`" in text
    assert [r["pair"] for r in json.loads((merged / "results.json").read_text())["rows"]] == [r["pair"] for r in results["rows"]]
    other = json.loads((tmp_path / "part_b" / "results.json").read_text())
    (tmp_path / "part_b" / "results.json").write_text(json.dumps({**other, "minutes": 99}))
    with pytest.raises(SystemExit):  # another budget: not one table
        bench.main(["--table-only", "--merge", parts, "--output-root", str(merged)])


def test_pool_makes_one_row_of_a_pairs_runs_across_merged_roots():
    import datafree.bench.zoo as bench

    def run(final: float, classes: list[float], steps: int) -> dict:
        return {"student_acc_final": final, "student_acc_best": final + 0.01, "steps": steps, "total_s": 500.0,
                "class_acc": {"student": classes, "teacher": [0.9, 0.8, 0.7]}, "class_coverage": [0.3, 0.3, 0.4]}

    def row(pair: str, runs: list[dict]) -> dict:
        head = {"pair": pair, "teacher": pair, "student": "s", "image_size": 32, "uses": [], "teacher_acc": 0.8}
        return bench.summary(head, runs)

    seeds_0_2 = row("t", [run(0.80, [0.5, 0.6, 0.7], 10), run(0.82, [0.5, 0.6, 0.7], 11)])  # worst: class 0 (0.5)
    seeds_3_5 = row("t", [run(0.90, [0.9, 0.1, 0.7], 12)])  # worst: class 1 (0.1)
    other = row("u", [run(0.70, [0.4, 0.6, 0.7], 9)])
    pooled = bench.pooled([seeds_0_2, other, seeds_3_5])
    assert [r["pair"] for r in pooled] == ["t", "u"] and pooled[1] == other
    t = pooled[0]
    assert t["final"]["n"] == 3 and abs(t["final"]["mean"] - 0.84) < 1e-9 and t["steps"] == [10, 11, 12]
    # per-class means over the three runs: [0.633, 0.433, 0.7] -> class 1 is the worst, under half the teacher's 0.8
    assert t["worst_class"] == 1 and abs(t["worst_class_student"] - 1.3 / 3) < 1e-9
    assert t["classes_below_half_teacher"] == []  # 0.433 > 0.8 / 2
    assert bench.summary({}, [run(0.8, [0.5, 0.3, 0.7], 1)])["classes_below_half_teacher"] == [1]


def test_a_pair_on_a_dataset_with_more_classes_names_its_own_classes():
    """A harder task's row (100 classes) in a table whose recipe's dataset has 10: the worst class and the classes
    under half the teacher's are named from the row's own dataset (the table's 10 names would not reach class 57)."""
    import datafree.bench.zoo as bench

    k = 100
    student = [0.6] * k
    student[57], student[3] = 0.05, 0.2
    run = {"student_acc_final": 0.5, "student_acc_best": 0.5, "steps": 10, "total_s": 600.0,
           "class_acc": {"student": student, "teacher": [0.8] * k}, "class_coverage": [1 / k] * k}
    names = [f"item{c}" for c in range(k)]
    row = bench.summary({"pair": "t-s@many", "part": "harder", "teacher": "t", "student": "s", "image_size": 32,
                         "class_names": names, "uses": [], "teacher_acc": 0.8}, [run])  # fmt: skip
    table = bench.table([row], ["T-shirt/top"] * 10)
    assert "| item57: 5.0 / 80.0 | item3, item57 |" in table
    from datafree.bench.common import class_list

    assert class_list(list(range(40)), names) == "40 of 100 (item0, item1, item2, ...)"  # dozens: counted
    assert bench.pooled([row])[0]["class_names"] == names and bench.pooled([row])[0]["part"] == "harder"


def test_a_merged_row_run_before_its_pair_had_a_part_takes_the_part_it_has_now(tmp_path):
    """A root run from a checkout whose part lists did not name its pair ("other") merges under the pair's part now;
    a row that names its part keeps it."""
    from datafree.bench.zoo_record import load_part

    rows = [{"pair": "mobilenet_small-mobilenet_tiny@fmnist-pairs100", "part": "other", "teacher": "mobilenet_small",
             "student": "mobilenet_tiny"},
            {"pair": "lenet5-lenet5_half", "part": "held-out", "teacher": "lenet5", "student": "lenet5_half"},
            {"pair": "lenet5-mlp", "part": "other", "teacher": "lenet5", "student": "mlp"}]  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps({"rows": rows, "recipe": "zoo", "minutes": 10}))
    parts = [row["part"] for row in load_part(tmp_path)["rows"]]
    assert parts == ["harder", "held-out", "other"]  # the pair in no list stays "other"; a named part is kept
