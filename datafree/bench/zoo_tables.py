"""The zoo's generated tables (``runs/tables.py`` renders them into the README and docs): one table per part of the
zoo, the weights-only mean over BatchNorm teachers, ``strict``'s gap to the default, and each pair checked against
the targets the docs state for the held-out and the harder tasks."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from datafree.bench.common import class_list, pct, provenance_line

# The targets a held-out or harder pair is held to (docs/results.md states them beside the tables): within POINTS of
# its teacher (MANY_POINTS for a task of MANY_CLASSES or more, where no per-class target applies), no class under
# half the teacher's accuracy, and the rarest class at least 1/(3K) of the generated images.
POINTS, MANY_POINTS, MANY_CLASSES = 10.0, 15.0, 100


def before_provenance(text: str, block: str) -> str:
    """``text`` (a table ending in its provenance line) with ``block`` inserted as a paragraph before that line."""
    head, _, provenance = text.rpartition("\n\n")
    return f"{head}\n\n{block}\n\n{provenance}"


def zoo(data: dict) -> str:
    """The default recipe on each teacher -> student pair of the zoo, with a wall-time budget per run; one table per
    part of the zoo (tuned, held-out) where the rows say which, each with its mean and its largest gap to the teacher."""
    names = data.get("class_names") or [str(k) for k in range(10)]
    parts = list(dict.fromkeys(r.get("part", "") for r in data["rows"]))
    sections = []
    for part in parts:
        rows = [r for r in data["rows"] if r.get("part", "") == part]
        finals = [statistics.fmean(r["final_per_seed"]) for r in rows]
        gaps = [r["teacher_acc"] - f for r, f in zip(rows, finals)]
        head = (f"**{part}** ({len(rows)} pairs): " if part else "") + (
            f"student final {100 * statistics.fmean(finals):.2f}% on average over the pairs, "
            f"{100 * statistics.fmean(gaps):.2f} points under their teachers (largest gap {100 * max(gaps):.2f})")
        sections.append(head + "\n\n" + _zoo_rows(rows, names))
    return "\n\n".join(sections) + "\n\n" + provenance_line(data)


def weights_only(data: dict) -> str:
    """The zoo with nothing recorded beside the teacher's weights: the zoo's table, and the mean over the pairs whose
    teacher has BatchNorm (its running statistics are part of its weights, and the run read them), per seed."""
    text = zoo(data)
    bn = [r for r in data["rows"] if any("BatchNorm running statistics" in use for use in r.get("uses", []))]
    if not bn:
        return text
    seeds = min(len(r["final_per_seed"]) for r in bn)
    per_seed = [statistics.fmean(r["final_per_seed"][i] for r in bn) for i in range(seeds)]
    best = [statistics.fmean(r["best_per_seed"][i] for r in bn) for i in range(seeds)]
    line = (f"Over the {len(bn)} pairs whose teacher has BatchNorm: student final {pct(per_seed)} (the mean over "
            f"the pairs, mean ± std over {seeds} seeds; per seed {' / '.join(f'{100 * v:.2f}' for v in per_seed)}), "
            f"best {pct(best)}.")
    return before_provenance(text, line)


def strict(data: dict) -> str:
    """The teacher-weights-only preset (``strict``: not even BatchNorm statistics) on the zoo's pairs, then each pair's
    gap to the default preset with nothing recorded (results/zoo_weights_only.json) and with statistics recorded
    (results/zoo.json, results/zoo_held_out.json), on the means over seeds; "-" where that file has no such pair."""
    text = zoo(data)
    folder = Path(data["_results_dir"])  # where the renderer found this file (runs/tables.py sets it)
    by_pair = {name: {r["pair"]: statistics.fmean(r["final_per_seed"]) for r in json.loads(path.read_text())["rows"]}
               for name in ("zoo_weights_only", "zoo", "zoo_held_out") if (path := folder / f"{name}.json").exists()}
    recorded = {**by_pair.get("zoo", {}), **by_pair.get("zoo_held_out", {})}
    lines = ["| teacher -> student | input | `strict` final | default, nothing recorded | `strict` - default | default, "
             "recorded | `strict` - default |", "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in data["rows"]:
        mine = statistics.fmean(r["final_per_seed"])
        cells = []
        for other in (by_pair.get("zoo_weights_only", {}).get(r["pair"]), recorded.get(r["pair"])):
            if other is None:
                cells += ["-", "-"]
                continue
            gap = round(100 * (mine - other), 2) + 0.0  # + 0.0: a gap that rounds to zero reads +0.00, not -0.00
            cells += [f"{100 * other:.2f}", f"{gap:+.2f}"]
        lines.append(f"| {r['teacher']} -> {r['student']} | {r['image_size']}x{r['image_size']} | {100 * mine:.2f} | "
                     + " | ".join(cells) + " |")
    return before_provenance(text, "The gap to the default preset, mean final over each table's seeds (the default's "
                             "figures from the `zoo_weights_only`, `zoo` and `zoo_held_out` tables, each with its own "
                             "provenance):\n\n" + "\n".join(lines))


def _zoo_rows(rows: list[dict], names: list[str]) -> str:
    lines = ["| teacher -> student | input | teacher | student final | student best | worst class: student / teacher "
             "| classes < half the teacher's | rarest class share (1/K balanced) | steps | s per seed |",
             "|---|---|---:|---:|---:|---|---|---:|---|---|"]
    for r in rows:
        here = r.get("class_names") or names  # a pair on another dataset (e.g. 100 classes) records its own
        below = class_list(r["classes_below_half_teacher"], here)
        k = r["worst_class"]
        task = task_of(r)
        lines.append(f"| {r['teacher']} -> {r['student']} | {r['image_size']}x{r['image_size']}{task} | "
                     f"{100 * r['teacher_acc']:.2f} | {pct(r['final_per_seed'])} | {pct(r['best_per_seed'])} | "
                     f"{here[k]}: {100 * r['worst_class_student']:.1f} / {100 * r['worst_class_teacher']:.1f} | "
                     f"{below} | {min(r['min_coverage']):.3f} | {'/'.join(map(str, r['steps']))} | "
                     f"{'/'.join(f'{w:.0f}' for w in r['wall_s'])} |")  # fmt: skip
    return "\n".join(lines)




def task_of(row: dict) -> str:
    """" <dataset>" for a pair on a task other than Fashion-MNIST's items at 28 or 32 px, else ""."""
    data = row["pair"].partition("@")[2]
    return f" {data}" if data and not data.startswith("fashion-mnist") else ""


def target_misses(row: dict, names: list[str]) -> list[str]:
    """What keeps a pair from its targets (mean final over seeds; the rarest share of any seed), [] when it meets
    them all: a broken pair must not read as a met one, so each miss names its figure and the bound."""
    here = row.get("class_names") or names
    k = len(here)
    points, per_class = (MANY_POINTS, False) if k >= MANY_CLASSES else (POINTS, True)
    misses = []
    gap = 100 * (row["teacher_acc"] - statistics.fmean(row["final_per_seed"]))
    if gap > points:
        misses.append(f"{gap:.2f} points under its teacher (at most {points:g})")
    below = row["classes_below_half_teacher"]
    if per_class and below:
        worst = row["worst_class"]
        figures = f"{100 * row['worst_class_student']:.1f} / {100 * row['worst_class_teacher']:.1f}"
        figures = (f" ({figures})" if below == [worst] else f" (worst: {here[worst]}, {figures})" if worst in below
                   else "")  # fmt: skip
        misses.append(f"{class_list(below, here)} under half the teacher's accuracy{figures}")
    rarest = min(row["min_coverage"])
    if rarest < 1 / (3 * k):
        misses.append(f"rarest class share {rarest:.4f} (at least 1/(3K) = {1 / (3 * k):.4f})")
    return misses


def zoo_targets(data: dict) -> str:
    """The zoo's table, then which pairs meet the targets and what each of the others misses."""
    text = zoo(data)
    names = data.get("class_names") or [str(k) for k in range(10)]
    misses = [(r, target_misses(r, names)) for r in data["rows"]]
    missed, met = [(r, m) for r, m in misses if m], [r for r, m in misses if not m]
    pair = lambda r: f"{r['teacher']} -> {r['student']} ({r['image_size']}x{r['image_size']}{task_of(r)})"  # noqa: E731
    lines = [f"**Targets**: within {POINTS:g} points of the teacher, no class under half the teacher's accuracy, the "
             f"rarest class at least 1/(3K) of the generated images (a task of {MANY_CLASSES} classes or more: within "
             f"{MANY_POINTS:g} points, and the share). Met by {len(met)} of {len(data['rows'])} pairs"
             + (f" ({', '.join(pair(r) for r in met)})" if met else "") + ("; missed:" if missed else ".")]  # fmt: skip
    lines += [f"- {pair(r)}: {'; '.join(m)}" for r, m in missed]
    return before_provenance(text, "\n".join(lines))


def against_default(data: dict) -> str:
    """An opt-in variant of the default on the zoo's pairs (:func:`zoo_targets`' table), then each pair against the
    default's recorded runs of the same seeds (results/zoo.json, results/zoo_held_out.json): a variant is judged seed
    by seed, as recipe changes are; "-" where the default has no run of the pair."""
    text = zoo_targets(data)
    folder = Path(data["_results_dir"])  # where the renderer found this file (runs/tables.py sets it)
    default = {r["pair"]: dict(zip(r["seeds"], r["final_per_seed"]))
               for name in ("zoo", "zoo_held_out") if (path := folder / f"{name}.json").exists()
               for r in json.loads(path.read_text())["rows"]}  # fmt: skip
    lines = ["| teacher -> student | input | seeds | variant final | default final, same seeds | variant - default | "
             "seeds above the default's |", "|---|---|---|---:|---:|---:|---|"]  # fmt: skip
    for r in data["rows"]:
        mine = dict(zip(r["seeds"], r["final_per_seed"]))
        theirs = default.get(r["pair"], {})
        seeds = [s for s in mine if s in theirs]
        size = f"{r['image_size']}x{r['image_size']}{task_of(r)}"
        if not seeds:
            lines.append(f"| {r['teacher']} -> {r['student']} | {size} | {'/'.join(map(str, mine))} | "
                         f"{100 * statistics.fmean(mine.values()):.2f} | - | - | - |")  # fmt: skip
            continue
        ours, base = statistics.fmean(mine[s] for s in seeds), statistics.fmean(theirs[s] for s in seeds)
        above = sum(mine[s] > theirs[s] for s in seeds)
        gap = round(100 * (ours - base), 2) + 0.0  # + 0.0: a gap that rounds to zero reads +0.00, not -0.00
        lines.append(f"| {r['teacher']} -> {r['student']} | {size} | {'/'.join(map(str, seeds))} | {100 * ours:.2f} | "
                     f"{100 * base:.2f} | {gap:+.2f} | {above} of {len(seeds)} |")  # fmt: skip
    return before_provenance(text, "Against the default preset's runs of the same seeds (the `zoo` and `zoo_held_out` "
                             "tables, each with its own provenance):\n\n" + "\n".join(lines))
