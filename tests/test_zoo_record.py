"""The zoo's record keeps each seed's run in compact form, so a recorded table pools with runs made later (another
sitting, another machine) as if they had run together; a file recorded before runs were kept merges but does not pool."""

from __future__ import annotations

import json

import pytest


def _run(seed: int, final: float, classes: list[float], steps: int) -> dict:
    # what a run's results.json holds that a row is made from, plus what a record drops (the confusion matrices)
    return {"seed": seed, "commit": "abc", "student_acc_final": final, "student_acc_best": final + 0.01, "steps": steps,
            "total_s": 500.0 + seed, "class_acc": {"student": classes, "teacher": [0.9, 0.8, 0.7]},
            "class_coverage": [0.3, 0.3, 0.4], "uses": [], "confusion": {"student": [[5, 1, 0], [3, 2, 1], [0, 0, 6]]},
            "student_acc_final_by_step": list(range(50))}  # fmt: skip


def _row(pair: str, runs: list[dict]) -> dict:
    import datafree.bench.zoo as bench

    head = {"pair": pair, "part": "held-out", "teacher": pair, "student": "s", "image_size": 32, "uses": ["x"],
            "teacher_acc": 0.8}  # fmt: skip
    return bench.summary(head, runs)


FIGURES = ("final", "best", "worst_class", "worst_class_student", "worst_class_teacher", "classes_below_half_teacher",
           "min_coverage", "steps", "wall_s", "teacher_acc", "uses", "part")


def _recorded(tmp_path, rows: list[dict], name: str = "t.json", minutes: float = 10.0):
    from datafree.bench.zoo_record import compact_row
    from datafree.io.results import record

    table = {"recipe": "runs/zoo.toml", "preset": "default", "minutes": minutes, "class_names": ["a", "b", "c"],
             "rows": [compact_row(r, ["a", "b", "c"]) for r in rows]}  # fmt: skip
    return record(tmp_path / name, table, tmp_path, ["runs/bench_teachers.py", "--record", name])


def test_a_recorded_row_gives_back_the_row_it_was_made_from(tmp_path):
    from datafree.bench.zoo_record import load_part

    row = _row("t", [_run(0, 0.80, [0.5, 0.6, 0.7], 10), _run(1, 0.82, [0.3, 0.6, 0.7], 11)])
    path = _recorded(tmp_path, [row])
    saved = json.loads(path.read_text())["rows"][0]
    assert [r["seed"] for r in saved["runs"]] == [0, 1] and saved["runs"][0]["commit"] == "abc"
    assert "confusion" not in saved["runs"][0] and "student_acc_final_by_step" not in saved["runs"][0]  # compact
    assert saved["final_per_seed"] == [0.80, 0.82] and saved["seeds"] == [0, 1]
    again = load_part(path)["rows"][0]
    assert {k: again[k] for k in FIGURES} == {k: row[k] for k in FIGURES}
    assert again["worst_class"] == 0 and again["worst_class_student"] == pytest.approx(0.4)


def test_a_recorded_table_pools_with_seeds_run_later(tmp_path):
    from datafree.bench.zoo_record import load_part, pooled

    first = [_run(0, 0.80, [0.5, 0.6, 0.7], 10), _run(1, 0.82, [0.5, 0.6, 0.7], 11)]
    later = [_run(2, 0.90, [0.9, 0.1, 0.7], 12)]
    recorded = load_part(_recorded(tmp_path, [_row("t", first), _row("u", [_run(0, 0.7, [0.4, 0.6, 0.7], 9)])]))
    rows = pooled([*recorded["rows"], _row("t", later)])
    together = _row("t", [*first, *later])  # as if the three seeds had run in one sitting
    assert [r["pair"] for r in rows] == ["t", "u"]
    assert {k: rows[0][k] for k in FIGURES} == {k: together[k] for k in FIGURES}
    assert rows[0]["final"]["n"] == 3 and rows[0]["worst_class"] == 1  # the later seed moved the worst class


def test_a_file_recorded_before_runs_were_kept_merges_but_does_not_pool(tmp_path):
    from datafree.bench.zoo_record import load_part, pooled

    path = _recorded(tmp_path, [_row("t", [_run(0, 0.80, [0.5, 0.6, 0.7], 10)])])
    data = json.loads(path.read_text())
    for row in data["rows"]:
        del row["runs"]  # as the files recorded before this change are
    path.write_text(json.dumps(data))
    old = load_part(path)["rows"][0]
    assert old["final"]["mean"] == 0.80 and old["runs"] == [] and old["worst_class"] == 0
    del data["rows"][0]["part"]  # and before the zoo had parts: the part its pair is in now
    data["rows"][0].update(pair="gn_cnn-mlp", teacher="gn_cnn", student="mlp")
    path.write_text(json.dumps(data))
    assert load_part(path)["rows"][0]["part"] == "held-out"
    assert pooled([old, _row("u", [_run(0, 0.7, [0.4, 0.6, 0.7], 9)])])[0] is old  # alone in its pair: kept as it was
    import datafree.bench.zoo as bench

    assert "| t -> s | 32x32 | 80.00 | 80.00 ± 0.00 |" in bench.table([old], ["a", "b", "c"])  # the table takes it
    with pytest.raises(ValueError, match="recorded before runs were kept"):
        pooled([old, _row("t", [_run(1, 0.9, [0.9, 0.1, 0.7], 12)])])


def test_merge_takes_a_results_file_beside_an_output_root_and_records_the_pooled_table(tmp_path, monkeypatch, capsys):
    import datafree.bench.zoo as bench

    monkeypatch.chdir(tmp_path)  # --record NAME writes results/NAME.json of the working directory
    first = _recorded(tmp_path, [_row("t", [_run(0, 0.80, [0.5, 0.6, 0.7], 10)])])
    later = tmp_path / "later"
    later.mkdir()
    (later / "results.json").write_text(json.dumps({
        "rows": [_row("t", [_run(1, 0.84, [0.5, 0.6, 0.7], 11)]), _row("u", [_run(1, 0.7, [0.4, 0.6, 0.7], 9)])],
        "recipe": "/tmp/snapshot/runs/zoo.toml", "preset": "default", "hardware": "cpu", "command": "cmd later",
        "minutes": 10.0}))  # fmt: skip
    args = ["--table-only", "--merge", f"{first},{later}", "--pool", "--output-root", str(tmp_path / "m"), "--record", "both"]
    assert bench.main(args) == 0
    data = json.loads((tmp_path / "results" / "both.json").read_text())
    assert [(r["pair"], r["seeds"], r["final_per_seed"]) for r in data["rows"]] == [("t", [0, 1], [0.80, 0.84]),
                                                                                   ("u", [1], [0.7])]  # fmt: skip
    assert [len(r["runs"]) for r in data["rows"]] == [2, 1]  # kept again, for the next sitting's seeds
    assert [p["command"] for p in data["earlier"]] == ["python runs/bench_teachers.py --record t.json"]  # what made them
    assert data["made_by"] == ["cmd later"]  # the command that ran the output root's rows, not only the merge's
    from datafree.bench.common import provenance_line

    assert "rows run by: `cmd later`" in provenance_line(data)
    assert bench.main(["--table-only", "--merge", str(tmp_path / "results" / "both.json"), "--output-root",
                       str(tmp_path / "m1"), "--record", "again"]) == 0  # fmt: skip
    again = json.loads((tmp_path / "results" / "again.json").read_text())
    assert [p["command"].split()[-1] for p in again["earlier"]] == ["t.json", "both"]  # the whole history
    assert again["made_by"] == ["cmd later"]  # carried by the recorded file into the next merge
    # a results file of another budget is not the same table: refused by name
    other = _recorded(tmp_path, [_row("t", [_run(3, 0.8, [0.5, 0.6, 0.7], 10)])], name="other.json", minutes=5.0)
    with pytest.raises(SystemExit):
        bench.main(["--table-only", "--merge", f"{first},{other}", "--output-root", str(tmp_path / "m2")])
    capsys.readouterr()
    assert bench.main(["--table-only", "--merge", f"{tmp_path / 'nothing_here'}", "--output-root", str(tmp_path / "m3")]) == 2
    assert "neither an output root with a results.json nor a results file" in capsys.readouterr().err


def test_a_dataset_missing_on_this_machine_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    import datafree.bench.zoo as bench

    empty = tmp_path / "no-debian"
    empty.mkdir()
    monkeypatch.setenv("DATAFREE_FMNIST_DIR", str(empty))
    args = ["--pairs", "lenet5:lenet5_half", "--seeds", "1", "--output-root", str(tmp_path / "z"),
            "--data.root", str(tmp_path / "data")]  # fmt: skip
    assert bench.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Fashion-MNIST not found") and "apt-get install dataset-fashion-mnist" in err
    assert "Traceback" not in err


def test_replace_puts_a_pair_measured_again_in_place_of_its_recorded_rows(tmp_path, monkeypatch, capsys):
    import datafree.bench.zoo as bench

    monkeypatch.chdir(tmp_path)
    old = _recorded(tmp_path, [_row("t", [_run(0, 0.70, [0.5, 0.6, 0.7], 10)]), _row("u", [_run(0, 0.6, [0.4, 0.6, 0.7], 9)])])
    data = json.loads(old.read_text())
    for row in data["rows"]:
        del row["runs"]  # as the files recorded before runs were kept
    old.write_text(json.dumps(data))
    again = tmp_path / "again"
    again.mkdir()
    (again / "results.json").write_text(json.dumps({
        "rows": [_row("t", [_run(0, 0.80, [0.5, 0.6, 0.7], 10), _run(1, 0.82, [0.5, 0.6, 0.7], 11)])],
        "recipe": "zoo", "preset": "default", "hardware": "cpu", "command": "cmd again", "minutes": 10.0}))  # fmt: skip
    merge = ["--table-only", "--merge", f"{old},{again}", "--pool", "--output-root", str(tmp_path / "m")]
    assert bench.main(merge) == 2 and "cannot be pooled" in capsys.readouterr().err  # a frozen row does not pool
    assert bench.main([*merge, "--replace", "--record", "new"]) == 0
    rows = json.loads((tmp_path / "results" / "new.json").read_text())["rows"]
    assert [(r["pair"], r["final_per_seed"]) for r in rows] == [("u", [0.6]), ("t", [0.80, 0.82])]  # t measured again
    assert all("recorded" not in r for r in rows)


def test_a_merged_table_records_the_threads_its_runs_computed_with_not_the_merging_process(tmp_path, monkeypatch):
    import torch

    import datafree.bench.zoo as bench
    from datafree.bench.zoo_record import runs_threads

    monkeypatch.chdir(tmp_path)
    first = _recorded(tmp_path, [_row("t", [_run(0, 0.80, [0.5, 0.6, 0.7], 10)])])  # this process's count, as run
    recorded = json.loads(first.read_text())["provenance"]["hardware"]["threads"]
    later = tmp_path / "later"
    later.mkdir()
    runs_line = f"AMD EPYC (2 cores, ATen AVX512); CPU, {recorded} threads; torch 2"
    (later / "results.json").write_text(json.dumps({
        "rows": [_row("u", [_run(1, 0.7, [0.4, 0.6, 0.7], 9)])], "recipe": "runs/zoo.toml", "preset": "default",
        "hardware": runs_line, "command": "cmd later", "minutes": 10.0}))  # fmt: skip
    merging = recorded + 3  # the merging process computes with another count than its runs did
    monkeypatch.setattr(torch, "get_num_threads", lambda: merging)
    assert bench.main(["--table-only", "--merge", f"{first},{later}", "--output-root", str(tmp_path / "m"),
                       "--record", "merged"]) == 0  # fmt: skip
    merged = json.loads((tmp_path / "results" / "merged.json").read_text())
    assert merged["provenance"]["hardware"]["threads"] == recorded
    # the machines the runs ran on, not the merging process's: the recorded file's and the output root's
    from datafree.bench.common import provenance_line
    from datafree.io.results import cpu_name

    here = json.loads(first.read_text())["provenance"]["hardware"]
    assert merged["runs_on"] == sorted({f"{cpu_name()} ({here['cores']} cores, ATen {here['cpu_capability']})",
                                        "AMD EPYC (2 cores, ATen AVX512)"})  # fmt: skip
    line = provenance_line(merged)
    assert "merged; its runs on " in line and "AMD EPYC (2 cores, ATen AVX512)" in line.split("<br>")[0]
    assert runs_threads(["x; CPU, 1 threads; y", "a; 2 threads; b"]) == "1 and 2"  # parts that disagree say so
    assert runs_threads(["a line that names no threads"]) is None


def test_pairs_with_table_only_drops_the_other_pairs_and_their_runs_commands(tmp_path, monkeypatch, capsys):
    import datafree.bench.zoo as bench

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    root.mkdir()
    (root / "results.json").write_text(json.dumps({
        "rows": [_row("a-b@x", [_run(0, 0.80, [0.5, 0.6, 0.7], 10)]), _row("c-d@y", [_run(0, 0.6, [0.4, 0.6, 0.7], 9)])],
        "recipe": "zoo", "preset": "default", "hardware": "cpu", "minutes": 10.0,
        "made_by": ["python runs/bench_teachers.py --pairs a:b@x --seeds 1", "python runs/bench_teachers.py --pairs c:d@y",
                    "python runs/bench_teachers.py --pairs 'c:d@y,a:b@x'"]}))  # fmt: skip
    args = ["--table-only", "--merge", str(root), "--output-root", str(tmp_path / "m"), "--pairs", "a:b@x"]
    assert bench.main([*args, "--record", "kept"]) == 0
    data = json.loads((tmp_path / "results" / "kept.json").read_text())
    assert [r["pair"] for r in data["rows"]] == ["a-b@x"]
    assert data["made_by"] == ["python runs/bench_teachers.py --pairs a:b@x --seeds 1",
                               "python runs/bench_teachers.py --pairs 'c:d@y,a:b@x'"]  # fmt: skip
    capsys.readouterr()
    with pytest.raises(SystemExit):
        bench.main([*args[:-1], "e:f"])
    assert "--pairs names e-f, which no merged part holds" in capsys.readouterr().err
