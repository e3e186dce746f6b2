"""The zoo's figures as a results file that later measurements can join: per-seed runs kept in compact form.

A 3-seed zoo table takes more machine time than one sitting has, and run folders do not outlive the machine they
ran on. So ``--record NAME`` keeps, for every pair, each seed's run in a compact form (its final and best accuracy,
the per-class accuracies of the student and the teacher, the class coverage, steps, seconds, and the commit the
run's code was at): everything a table row is computed from (:func:`datafree.bench.zoo.summary`) but the
confusion matrices. ``--table-only --merge results/NAME.json,outputs/ROOT --pool`` then pools a recorded table with
runs made later (more seeds, more pairs) as if they had run together.

A file recorded before runs were kept (its rows hold only per-seed figures) still merges, row by row, but such a
row cannot be pooled with other runs of its pair: that is a clear error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

HEAD = ("pair", "part", "teacher", "student", "image_size", "class_names", "uses", "teacher_acc")
# a row's own fields recorded beside its runs (what the docs' tables read without recomputing)
KEEP = ("pair", "part", "teacher", "student", "image_size", "teacher_acc", "uses", "worst_class", "worst_class_student",
        "worst_class_teacher", "classes_below_half_teacher", "min_coverage", "steps", "wall_s")


def compact_run(run: dict) -> dict:
    """What a table row needs of one run's results.json, rounded to what the tables print."""
    r4 = lambda values: [None if v is None else round(v, 4) for v in values]  # noqa: E731
    return {"seed": run.get("seed"), "commit": run.get("commit"), "student_acc_final": run["student_acc_final"],
            "student_acc_best": run["student_acc_best"],
            "class_acc": {"student": r4(run["class_acc"]["student"]), "teacher": r4(run["class_acc"]["teacher"])},
            "class_coverage": r4(run["class_coverage"]), "steps": run["steps"], "total_s": run["total_s"],
            "uses": run.get("uses", [])}  # fmt: skip


def compact_row(row: dict, names: list[str]) -> dict:
    """A table row as recorded: its own figures, per-seed lists, and its runs in compact form (none for a row that
    came from a file recorded before runs were kept)."""
    runs = row.get("runs") or []
    own = {"class_names": row["class_names"]} if row.get("class_names", names) != names else {}
    per_seed = lambda key, run_key: [run[run_key] for run in runs] if runs else row[key]  # noqa: E731
    return {**{k: row[k] for k in KEEP if k in row}, **own, "seeds": per_seed("seeds", "seed"),
            "final_per_seed": per_seed("final_per_seed", "student_acc_final"),
            "best_per_seed": per_seed("best_per_seed", "student_acc_best"),
            **({"runs": [compact_run(run) for run in runs]} if runs else {})}  # fmt: skip


def with_current_part(row: dict) -> dict:
    """The row with the part its pair belongs to now where it was run or recorded without one: before the zoo had
    parts, or from a checkout whose part lists did not name the pair yet ("other")."""
    from datafree.bench.zoo import part_of

    if row.get("part", "other") != "other":
        return row
    data = row["pair"].partition("@")[2]
    return {**row, "part": part_of(f"{row['teacher']}:{row['student']}" + (f"@{data}" if data else ""))}


def row_from_record(row: dict) -> dict:
    """A recorded row as a table row: recomputed from its runs where it kept them, else its figures as they were."""
    from datafree.bench.zoo import summary
    from datafree.report import spread

    row = with_current_part(row)
    if row.get("runs"):
        return summary({k: row[k] for k in HEAD if k in row}, row["runs"])
    return {**row, "final": spread(row["final_per_seed"]), "best": spread(row["best_per_seed"]), "runs": []}


def load_part(path: Path) -> dict[str, Any]:
    """One part of ``--merge``: an output root (its results.json) or a results file written by ``--record``
    (``results/NAME.json``), as the fields the table is made from: rows, recipe, preset, minutes, hardware, command."""
    from datafree.io.results import load

    if path.suffix == ".json" and path.is_file():
        data = load(path)  # a clear error for a file that is not a results file
        if "rows" not in data or "minutes" not in data:
            raise ValueError(f"--merge: {path} is a results file, but not a zoo table's (no rows / minutes)")
        made = data["provenance"]
        box = made.get("hardware", {})
        hardware = (f"{box.get('cpu')} ({box.get('cores')} cores, ATen {box.get('cpu_capability')}); "
                    f"{box.get('threads')} threads; torch {box.get('torch')}; recorded at {made.get('commit')} on "
                    f"{made.get('date')}")  # fmt: skip
        return {"rows": [{**row_from_record(r), "recorded": True} for r in data["rows"]], "recipe": data["recipe"],
                "preset": data.get("preset"), "minutes": data["minutes"], "hardware": hardware,
                "command": made.get("command", ""), "smoke": False, "made_by": data.get("made_by", []),
                "earlier": [*data.get("earlier", []), made]}  # what made its rows, kept by the next record  # fmt: skip
    results = path / "results.json"
    if not results.is_file():
        raise ValueError(f"--merge: {path} is neither an output root with a results.json nor a results file "
                         "(results/NAME.json)")  # fmt: skip
    saved = json.loads(results.read_text())
    return {**saved, "rows": [with_current_part(row) for row in saved["rows"]]}


def runs_commands(part: dict) -> list[str]:
    """The commands that ran a ``--merge`` part's rows: a merged part's list, a results file's (``--record``) list
    (its own command is in its provenance, under ``earlier``), else the command that wrote the output root."""
    if "made_by" in part:
        return list(part["made_by"])
    return [part["command"]] if part.get("command") else []


def only_pairs(rows: list[dict], made_by: list[str], pairs: str) -> tuple[list[dict], list[str]]:
    """The rows of the pairs named in ``pairs`` (as ``--pairs`` writes them), and the commands that ran them: a
    pair dropped from a recorded table takes its runs' commands with it (a command that named only dropped pairs).
    ValueError naming a pair that no row holds."""
    names = [p for p in pairs.split(",") if p]
    keep = {p.replace(":", "-", 1) for p in names}  # a row's pair is its run's name: teacher-student@data
    unknown = sorted(keep - {row["pair"] for row in rows})
    if unknown:
        raise ValueError(f"--pairs names {', '.join(unknown)}, which no merged part holds; they hold "
                         f"{', '.join(row['pair'] for row in rows)}")  # fmt: skip

    def named(command: str) -> set[str]:
        found = re.search(r"--pairs\s+'?([^\s']+)", command)
        return {p.replace(":", "-", 1) for p in found.group(1).split(",")} if found else set()

    commands = [c for c in made_by if not named(c) or named(c) & keep]
    return [row for row in rows if row["pair"] in keep], commands


def runs_threads(hardware_lines: list[str]) -> int | str | None:
    """The threads the merged parts' runs computed with, read from their hardware lines ("...; CPU, 1 threads; ..."):
    a merged table is written by a process that ran nothing, so its own thread count says nothing about the runs.
    One number where the parts agree, "1 and 2" where they do not, None where no line names it."""
    counts = sorted({int(m.group(1)) for line in hardware_lines for m in [re.search(r"(\d+) threads", line)] if m})
    return None if not counts else counts[0] if len(counts) == 1 else " and ".join(map(str, counts))


def pair_key(row: dict) -> tuple:
    return row["teacher"], row["student"], row.get("image_size")


def replaced(rows: list[dict]) -> list[dict]:
    """The rows with those of a recorded file dropped wherever an output root has rows of the same pair (a pair
    measured again after a change replaces its recorded figures instead of pooling with them)."""
    again = {pair_key(row) for row in rows if not row.get("recorded")}
    return [row for row in rows if not (row.get("recorded") and pair_key(row) in again)]


def pooled(rows: list[dict]) -> list[dict]:
    """One row per pair (teacher, student, input size), its runs those of every row of that pair, summarized again."""
    from datafree.bench.zoo import summary

    by_pair: dict[tuple, list[dict]] = {}
    for row in rows:
        by_pair.setdefault(pair_key(row), []).append(row)
    out = []
    for same in by_pair.values():
        if len(same) == 1:
            out.append(same[0])
            continue
        if any(not row["runs"] for row in same):
            raise ValueError(f"--pool: {same[0]['pair']} comes from a results file recorded before runs were kept "
                             "(per-seed figures only), so its seeds cannot be pooled with other runs; re-run the "
                             "pair's seeds together, or merge without --pool")  # fmt: skip
        head = {k: same[0][k] for k in HEAD if k in same[0]}
        out.append(summary(head, [run for row in same for run in row["runs"]]))
    return out
