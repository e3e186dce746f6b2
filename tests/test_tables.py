"""The README's and docs' tables are what runs/tables.py makes of results/: a hand-edited figure fails here."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runs import tables  # noqa: E402


def test_committed_tables_match_results():
    assert tables.stale() == [], "run `python runs/tables.py` (make tables) and commit the result"


def test_every_block_is_used_and_known():
    """Each renderer's block appears in the docs, and every block in the docs has a renderer."""
    names = set()
    for doc in tables.documents():
        names |= {m.group(2) for m in tables.MARKER.finditer(doc.read_text())}
    assert names == set(tables.RENDERERS)


def test_a_hand_edited_result_makes_the_tables_stale(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(tables.RESULTS, results)
    files = sorted(results.glob("*.json"))
    assert files, "results/ holds no file"
    path = results / "check_recipes.json"
    data = json.loads(path.read_text())
    data["pairs"][0]["runs"][0]["final"] += 0.0123  # one seed's figure edited by hand
    path.write_text(json.dumps(data))
    stale = tables.stale(ROOT, results)
    assert any(line.endswith(": check_recipes") for line in stale), stale


def test_check_recipes_table_by_hand():
    data = {"provenance": {"command": "python x", "commit": "abc", "date": "2026-12-04",
                           "hardware": {"cpu": "cpu", "cores": 2, "cpu_capability": "AVX2", "accelerator": None,
                                        "torch": "2", "threads": 1}},
            "pairs": [{"pair": "demo", "teacher_acc": 0.9, "steps": 300, "floor": 0.66,
                       "runs": [{"final": 0.70, "best": 0.71}, {"final": 0.72, "best": 0.73},
                                {"final": 0.74, "best": 0.75}]}]}
    text = tables.check_recipes(data)
    assert "| demo | 90.00 | 300 | 70.00 / 72.00 / 74.00 | 72.00 ± 2.00 | 73.00 ± 2.00 | 66.00 |" in text
    assert "commit abc" in text and "AVX2" in text and "1 thread(s)" in text


def test_missing_file_names_its_command(tmp_path):
    assert "python runs/bench_teachers.py" in tables.render("zoo", tmp_path)
    with pytest.raises(KeyError, match="no table named"):
        tables.render("nope", tmp_path)


def test_zoo_table_by_hand_reports_each_part_apart():
    hardware = {"cpu": "cpu", "cores": 2, "cpu_capability": "AVX2", "accelerator": None, "torch": "2", "threads": 1}

    def row(part: str, teacher_acc: float, finals: list[float]) -> dict:
        return {"pair": "t-s", "part": part, "teacher": "t", "student": "s", "image_size": 28, "teacher_acc": teacher_acc,
                "final_per_seed": finals, "best_per_seed": finals, "worst_class": 1, "worst_class_student": 0.3,
                "worst_class_teacher": 0.8, "classes_below_half_teacher": [1], "min_coverage": [0.09, 0.08],
                "steps": [500, 510], "wall_s": [600.0, 601.0]}

    data = {"provenance": {"command": "python x", "commit": "abc", "date": "2026-12-05", "hardware": hardware},
            "class_names": ["a", "b"], "rows": [row("tuned", 0.9, [0.85, 0.87]), row("held-out", 0.9, [0.70, 0.74]),
                                                row("held-out", 0.8, [0.76, 0.76])]}  # fmt: skip
    text = tables.zoo(data)
    tuned, held_out = text.split("**held-out**")
    assert tuned.startswith("**tuned** (1 pairs): student final 86.00% on average over the pairs, 4.00 points under")
    assert held_out.startswith(" (2 pairs): student final 74.00% on average over the pairs, 11.00 points under their "
                               "teachers (largest gap 18.00)")
    assert "| t -> s | 28x28 | 90.00 | 72.00 ± 2.83 | 72.00 ± 2.83 | b: 30.0 / 80.0 | b | 0.080 | 500/510 | 600/601 |" in held_out
    assert "AVX2" in text
    many = {**row("harder", 0.6, [0.5, 0.5]), "class_names": [f"c{k}" for k in range(12)], "worst_class": 11,
            "classes_below_half_teacher": [3, 11]}  # a pair on a 12-class dataset: its own names, not the table's two
    assert "| c11: 30.0 / 80.0 | c3, c11 |" in tables.zoo({**data, "rows": [many]})


def test_weights_only_table_averages_the_batchnorm_pairs_per_seed():
    hardware = {"cpu": "cpu", "cores": 2, "cpu_capability": "AVX2", "accelerator": None, "torch": "2", "threads": 1}

    def row(finals: list[float], uses: list[str]) -> dict:
        return {"pair": "t-s", "part": "tuned", "teacher": "t", "student": "s", "image_size": 28, "teacher_acc": 0.9,
                "final_per_seed": finals, "best_per_seed": [f + 0.01 for f in finals], "worst_class": 1,
                "worst_class_student": 0.3, "worst_class_teacher": 0.8, "classes_below_half_teacher": [],
                "min_coverage": [0.09], "steps": [500, 510, 520], "wall_s": [600.0, 601.0, 602.0], "uses": uses}

    bn = ["the teacher's BatchNorm running statistics"]
    data = {"provenance": {"command": "python x", "commit": "abc", "date": "2026-12-05", "hardware": hardware},
            "class_names": ["a", "b"], "rows": [row([0.80, 0.84, 0.82], bn), row([0.70, 0.72, 0.74], bn),
                                                row([0.10, 0.10, 0.10], [])]}  # fmt: skip
    text = tables.weights_only(data)
    assert "Over the 2 pairs whose teacher has BatchNorm: student final 77.00 ± 1.73 (" in text  # 75, 78, 78
    assert "per seed 75.00 / 78.00 / 78.00), best 78.00 ± 1.73." in text
    assert text.endswith(tables.provenance_line(data)) and text.startswith(tables.zoo(data).rpartition("\n\n")[0])


def test_provenance_names_the_records_merged_in():
    hardware = {"cpu": "cpu", "cores": 2, "cpu_capability": "AVX2", "accelerator": None, "torch": "2", "threads": 1}
    now = {"command": "python merge", "commit": "new", "date": "2026-12-06", "hardware": hardware}
    before = {**now, "command": "python first", "commit": "old", "date": "2026-12-05"}
    line = tables.provenance_line({"provenance": now, "earlier": [before]})
    assert line.startswith("<sub>`python merge` · commit new · 2026-12-06 · cpu (2 cores, ATen AVX2)")
    assert "<br>merged in, rows recorded by: `python first` · commit old · 2026-12-05" in line and line.endswith("</sub>")
    assert "merged in" not in tables.provenance_line({"provenance": now})


def test_strict_table_states_each_pairs_gap_to_the_default_tables(tmp_path):
    hardware = {"cpu": "cpu", "cores": 2, "cpu_capability": "AVX2", "accelerator": None, "torch": "2", "threads": 1}
    provenance = {"command": "python x", "commit": "abc", "date": "2026-12-05", "hardware": hardware}

    def row(pair: str, finals: list[float]) -> dict:
        return {"pair": pair, "part": "tuned", "teacher": pair[0], "student": "s", "image_size": 32, "teacher_acc": 0.9,
                "final_per_seed": finals, "best_per_seed": finals, "worst_class": 1, "worst_class_student": 0.3,
                "worst_class_teacher": 0.8, "classes_below_half_teacher": [], "min_coverage": [0.09], "steps": [500],
                "wall_s": [600.0]}

    def save(name: str, rows: list[dict]) -> None:
        (tmp_path / f"{name}.json").write_text(json.dumps({"provenance": provenance, "rows": rows}))

    save("zoo_weights_only", [row("a-s", [0.80, 0.82]), row("b-s", [0.70, 0.70])])
    save("zoo", [row("a-s", [0.88, 0.88])])
    save("zoo_held_out", [row("b-s", [0.75, 0.77])])
    data = {"provenance": provenance, "class_names": ["x", "y"], "_results_dir": str(tmp_path),
            "rows": [row("a-s", [0.50, 0.60]), row("b-s", [0.40, 0.40]), row("c-s", [0.30, 0.30])]}  # fmt: skip
    text = tables.strict(data)
    assert "| a -> s | 32x32 | 55.00 | 81.00 | -26.00 | 88.00 | -33.00 |" in text
    assert "| b -> s | 32x32 | 40.00 | 70.00 | -30.00 | 76.00 | -36.00 |" in text  # held-out's recorded default
    assert "| c -> s | 32x32 | 30.00 | - | - | - | - |" in text  # a pair no default table has
    assert text.startswith(tables.zoo(data).rpartition("\n\n")[0]) and text.endswith(tables.provenance_line(data))


def test_an_opt_in_variant_is_set_against_the_defaults_runs_of_the_same_seeds(tmp_path):
    from datafree.bench.zoo_tables import against_default  # for a variant's table: none is recorded now
    hardware = {"cpu": "cpu", "cores": 2, "cpu_capability": "AVX2", "accelerator": None, "torch": "2", "threads": 1}
    provenance = {"command": "python x", "commit": "abc", "date": "2026-12-06", "hardware": hardware}

    def row(pair: str, seeds: list[int], finals: list[float]) -> dict:
        return {"pair": pair, "part": "held-out", "teacher": pair[0], "student": "s", "image_size": 28,
                "teacher_acc": 0.9, "seeds": seeds, "final_per_seed": finals, "best_per_seed": finals, "worst_class": 1,
                "worst_class_student": 0.5, "worst_class_teacher": 0.8, "classes_below_half_teacher": [],
                "min_coverage": [0.09], "steps": [500] * len(seeds), "wall_s": [600.0] * len(seeds)}  # fmt: skip

    (tmp_path / "zoo_held_out.json").write_text(json.dumps({"provenance": provenance, "rows": [
        row("a-s", [0, 1, 2], [0.80, 0.82, 0.90]), row("b-s", [0, 1, 2], [0.70, 0.70, 0.70])]}))  # fmt: skip
    data = {"provenance": provenance, "class_names": ["x", "y"], "_results_dir": str(tmp_path),
            "rows": [row("a-s", [0, 1, 2], [0.81, 0.83, 0.85]), row("b-s", [2], [0.60]), row("c-s", [0], [0.5])]}
    text = against_default(data)
    assert "| a -> s | 28x28 | 0/1/2 | 83.00 | 84.00 | -1.00 | 2 of 3 |" in text  # the mean hides seed 2's loss
    assert "| b -> s | 28x28 | 2 | 60.00 | 70.00 | -10.00 | 0 of 1 |" in text  # only the seeds both ran
    assert "| c -> s | 28x28 | 0 | 50.00 | - | - | - |" in text  # a pair the default tables do not have
    assert text.startswith(tables.zoo_targets(data).rpartition("\n\n")[0])


def test_verdict_needs_every_seed_on_one_side():
    assert tables.verdict([0.80, 0.81, 0.82], [0.70, 0.75, 0.79]) == "gain"
    assert tables.verdict([0.70, 0.75, 0.79], [0.80, 0.81, 0.82]) == "loss"
    assert tables.verdict([0.80, 0.81, 0.90], [0.70, 0.75, 0.805]) == "no gain here"  # higher mean, seeds overlap


def test_teacher_methods_table_by_hand():
    """Rows as recorded, the claims' lines only for pairs of rows the file has, and the rule beside them."""
    prov = {"command": "python x", "commit": "abc", "date": "2026-12-05",
            "hardware": {"cpu": "cpu", "cores": 2, "cpu_capability": "AVX2", "accelerator": None, "torch": "2", "threads": 1}}
    row = lambda m, kind, finals: {"method": m, "teacher": "all", "teacher_kind": kind, "distill": ["kd"],  # noqa: E731
                                   "steps_per_seed": [250, 250], "final_per_seed": finals, "best_per_seed": finals,
                                   "wall_s": [60.0, 61.0]}
    data = {"provenance": prov, "recipe": "runs/zoo.toml", "preset": "default", "student": "lenet5_half",
            "transfer": "synthetic", "budget": {"single_steps": 250, "steps": {}},
            "teachers": [{"arch": "lenet5", "seed": 0, "teacher_acc": 0.8765}],
            "rows": [row("single", "single", [0.70, 0.72]), row("ensemble_kd", "ensemble", [0.75, 0.77]),
                     row("feed", "ensemble", [0.76, 0.74]), {**row("sfeed", "ensemble", [0.6, 0.6]),
                                                             "steps_per_seed": [[90, 90], [90, 80]]}]}  # fmt: skip
    text = tables.teacher_methods(data)
    assert "| ensemble_kd | all (ensemble) | kd | 250/250 | 76.00 ± 1.41 | 76.00 ± 1.41 | 60/61 |" in text
    assert "- FEED's feature transforms (`feed` over `ensemble_kd`): -1.00 points, no gain here" in text
    assert "- the ensemble's averaged logits (`ensemble_kd` over `single`): +5.00 points, gain" in text
    assert "| sfeed | all (ensemble) | kd | 2 x 90/90+80 |" in text  # steps per stage
    assert "rco" not in text and "preset `default`" in text and "lenet5@0 87.65" in text and "commit abc" in text


def test_search_table_compares_each_budgets_searched_row_with_its_hand_designed_one():
    prov = {"command": "python x", "commit": "abc", "date": "2026-12-05",
            "hardware": {"cpu": "cpu", "cores": 2, "cpu_capability": "AVX2", "accelerator": None, "torch": "2", "threads": 1}}
    row = lambda kind, budget, finals, **more: {"kind": kind, "budget": budget, "student": "s", "flops": 1000,  # noqa: E731
                                                "params": 10, "final_per_seed": finals, "best_per_seed": finals,
                                                "search_s": [1.0], "distill_s": [2.0], **more}
    data = {"provenance": prov, "recipe": "runs/zoo.toml", "preset": "default", "steps": 250, "search_steps": 300,
            "flops_reference": 133740, "teacher": {"arch": "lenet5", "seed": 0, "teacher_acc": 0.87},
            "rows": [row("hand", 1.0, [0.70, 0.71]), row("searched", 1.0, [0.75, 0.76], l1=0.05, search_steps=[40, 50], reached=[True, False]),
                     row("hand", 0.5, [0.70, 0.74])]}  # fmt: skip
    text = tables.search(data)
    assert "| 1.0 | searched: s | 0.05 growing | 40/50* |" in text and "| 0.5 | hand: s | - | - |" in text
    assert "- the searched student at budget 1.0 (`searched at 1.0` over `hand at 1.0`): +5.00 points, gain" in text
    assert "budget 0.5 (" not in text and text.count("A gain needs") == 1


def test_held_out_targets_name_each_miss_with_its_figure_and_bound():
    hardware = {"cpu": "cpu", "cores": 2, "cpu_capability": "AVX2", "accelerator": None, "torch": "2", "threads": 1}
    hundred = {"class_names": [f"k{i}" for i in range(100)]}  # a 100-class task: 15 points, no per-class target

    def row(pair: str, finals: list[float], below: list[int] = (), coverage: float = 0.2, **extra) -> dict:
        return {"pair": pair, "part": "held-out", "teacher": pair.split("-")[0], "student": "s", "image_size": 28,
                "teacher_acc": 0.90, "final_per_seed": finals, "best_per_seed": finals, "worst_class": 1,
                "worst_class_student": 0.30, "worst_class_teacher": 0.80, "classes_below_half_teacher": list(below),
                "min_coverage": [0.3, coverage], "steps": [500, 500], "wall_s": [600.0, 600.0], **extra}  # fmt: skip

    rows = [row("ok-s", [0.82, 0.80]),  # 9 points under its teacher
            row("far-s", [0.78, 0.80]),  # 11 points under
            row("half-s", [0.85, 0.85], below=[1]),  # class b under half its teacher's
            row("rare-s", [0.85, 0.85], coverage=0.1),  # one seed's rarest share 0.1 < 1/(3K) = 1/9
            row("many-s@fmnist-pairs100", [0.76, 0.76], below=[0, 1], coverage=0.004, **hundred),  # all met
            row("manyfar-s@fmnist-pairs100", [0.74, 0.74], coverage=0.003, **hundred)]  # fmt: skip
    data = {"provenance": {"command": "python x", "commit": "abc", "date": "2026-12-06", "hardware": hardware},
            "class_names": ["a", "b", "c"], "rows": rows}  # fmt: skip
    text = tables.zoo_targets(data)
    assert "Met by 2 of 6 pairs (ok -> s (28x28), many -> s (28x28 fmnist-pairs100)); missed:" in text
    assert "\n- far -> s (28x28): 11.00 points under its teacher (at most 10)\n" in text
    assert "\n- half -> s (28x28): b under half the teacher's accuracy (30.0 / 80.0)\n" in text
    assert "\n- rare -> s (28x28): rarest class share 0.1000 (at least 1/(3K) = 0.1111)\n" in text
    assert ("\n- manyfar -> s (28x28 fmnist-pairs100): 16.00 points under its teacher (at most 15); rarest class share "
            "0.0030 (at least 1/(3K) = 0.0033)\n") in text  # fmt: skip
    assert text.startswith(tables.zoo(data).rpartition("\n\n")[0]) and text.endswith(tables.provenance_line(data))
    assert "missed" not in tables.zoo_targets({**data, "rows": rows[:1]})
