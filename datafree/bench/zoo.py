"""One recipe, every teacher of the zoo: is the data-free default robust beyond the pair it was tuned on?

    datafree bench zoo [--recipe zoo] [--preset strict] [--seeds 3] [--first-seed 0] [--minutes 10]
        [--part all|tuned|held-out | --pairs lenet5:lenet5_half,vgg_bn#label_smoothing=0.1:mlp,...]
        [--teacher-epochs N] [--output-root outputs/bench_teachers] [--smoke] [--table-only [--merge ROOT,ROOT [--pool]]]
        [--section.key value]

The zoo has two parts (``--part``): the TUNED pairs every recipe change is measured on, and the HELD_OUT pairs no
change is tuned on (other normalizations and families; see the lists below); the table reports them apart.
For each teacher -> student pair (``teacher:student@dataset`` runs it on another registered dataset, e.g.
``@fashion-mnist-28``, the same images at their native 28x28; ``teacher#key=value:student`` trains the teacher
with that [teacher_training] key, e.g. ``#label_smoothing=0.1``): the teacher is trained once on the real data by
the recipe's [teacher_training] (train_teacher.py's path; it records per-class feature statistics beside it),
then the SAME recipe (no per-pair tuning; only teacher.arch and student.arch change) distills each seed with a
wall-time budget for the whole run (train.max_minutes: the step count is fixed before step 0). Writes table.md and results.json
under --output-root: teacher accuracy, student final and best (mean +- std over seeds), the worst class
(student, and the teacher on it), the generator's class coverage over the last 10% of steps (the rarest
class's share; K classes -> 1/K when balanced), steps, wall time, and what the generator read beyond the
teacher's weights. --preset strict measures the teacher-weights-only setting with the same recipe otherwise.
--section.key overrides (as train_dfl.py takes them) measure an ablation on every pair.
``python runs/bench_teachers.py`` is the same program, run from a checkout.
--table-only rewrites table.md from results.json; with --merge, from several roots' results.json (pairs run as
separate processes, one per core) into --output-root; --pool makes one row of a pair's runs across the merged
roots (more seeds of the same recipe run later with --first-seed: the parts must have run the same overrides,
which only their commands, printed below the table, show). A --merge part may also be a file --record wrote
(results/NAME.json): it keeps each seed's run in compact form, so a table recorded in one sitting pools with seeds
or pairs run in a later one (datafree/bench/zoo_record.py); --pairs with --table-only keeps only the pairs it
names (a pair dropped from a recorded table, with its runs' commands). --smoke runs the chain in seconds on
generated stand-in data (numbers meaningless).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

from datafree.bench.args import bench_parser, load_recipe, overridden, parse, recipe_label
from datafree.bench.common import class_list
from datafree.bench.zoo_record import (compact_row, load_part, only_pairs, pooled, replaced, runs_commands,
                                       runs_threads)
from datafree.config import Config
from datafree.config.spellings import translate_batch_keys


# The zoo in two parts. Recipe changes are measured and tuned on TUNED; HELD_OUT is never tuned on (a change
# that wins on the first and loses on the second does not become the default): teachers normalized otherwise
# than by BatchNorm (GroupNorm, a ViT's LayerNorm) or without a Linear head (an all-conv net with dropout), one
# trained with label smoothing, students of other families than their teachers (no normalization, an MLP,
# depthwise-separable convs), at the images' native 28 px and padded 32 px (datafree/models/families.py).
TUNED = ("lenet5:lenet5_half,vgg_bn:vgg_bn_small,resnet20:resnet8_narrow,mobilenet_small:mobilenet_tiny,"
         "vgg_bn:vgg_bn_small@fashion-mnist-28")
HELD_OUT = ("vgg_bn:plain_cnn@fashion-mnist-28,gn_cnn:mobilenet_tiny,vit_tiny:plain_cnn@fashion-mnist-28,"
            "allconv:resnet8_narrow@fashion-mnist-28,vgg_bn#label_smoothing=0.1:mlp,gn_cnn:mlp")
# harder real tasks made from Fashion-MNIST's images (datafree/data/fmnist_tasks.py): 100 classes and 64-px colour,
# two pairs each, so that a change for many classes or large images is judged on more than one teacher. The 64-px
# pairs have a stride-2 stem, as networks built for larger images do: with it the real images take the students
# to 75-78% in 10 minutes on one core (stride 1: 36%), so nearly all of the data-free gap is the method's
HARDER = ("resnet20:resnet8_narrow@fmnist-pairs100,mobilenet_small:mobilenet_tiny@fmnist-pairs100,"
          "resnet20_s2:resnet8_narrow_s2@fmnist-rgb64,mobilenet_small_s2:mobilenet_tiny_s2@fmnist-rgb64")
PARTS = {"tuned": TUNED, "held-out": HELD_OUT, "harder": HARDER, "all": f"{TUNED},{HELD_OUT}"}


def part_of(pair: str) -> str:
    """Which part of the zoo a pair (as written in --pairs) belongs to: tuned, held-out, or other."""
    return next((part for part in ("tuned", "held-out", "harder") if pair in PARTS[part].split(",")), "other")


def pair_config(base: Config, teacher: str, student: str, root: Path, smoke: bool, data: str = "",
                training: dict | None = None) -> Config:  # fmt: skip
    """The recipe with only the networks, the dataset (``@data``: the same images at another size), the teacher's
    training (``#key=value``, e.g. label smoothing) and where things are written changed."""
    c = copy.deepcopy(base)
    trained = "".join(f"#{k}={v}" for k, v in (training or {}).items())
    c.name = f"{teacher}{trained}-{student}" + (f"@{data}" if data else "")
    c.teacher.arch, c.student.arch = teacher, student
    c.data.name = data or c.data.name
    for key, value in (training or {}).items():
        setattr(c.teacher_training, key, type(getattr(c.teacher_training, key))(value))
    folder = teacher + trained.replace("#", "+").replace("=", "") + (f"@{data}" if data else "")
    c.teacher.checkpoint = str(root / "teachers" / folder / "teacher.safetensors")
    if smoke:
        c.data.name, c.data.like, c.data.fake_size, c.data.eval_batch_size = "fake", c.data.name, 64, 64
        c.teacher_training.epochs, c.teacher_training.batch_size = 1, 16
        c.teacher.checkpoint = str(root / "teachers-smoke" / folder / "teacher.safetensors")
        t = c.train
        t.batch_size, t.student_steps, t.eval_every, t.log_every, t.sample_every, t.checkpoint_every = 8, 2, 2, 1, 4, 4
        c.batches = translate_batch_keys(c.batches, {"fresh_batch_size": 0})  # fresh batches as small as the generator's
        c.generator.width, c.runtime.channels_last = 8, False
    return c


def parse_pair(text: str) -> tuple[str, str, str, dict] | None:
    """"teacher:student", "teacher:student@dataset" (the same images at another size, e.g. fashion-mnist-28),
    "teacher#key=value:student" (the teacher trained with teacher_training.key = value, e.g. label_smoothing=0.1)."""
    from datafree.config import TeacherTrainingConfig

    nets, _, data = text.partition("@")
    names = nets.split(":")
    if len(names) != 2 or not all(names):
        return None
    teacher, *settings = names[0].split("#")
    training = dict(setting.partition("=")[::2] for setting in settings)
    known = {f for f in TeacherTrainingConfig.__dataclass_fields__}
    if not teacher or any(not key or key not in known or not value for key, value in training.items()):
        return None
    return teacher, names[1], data, training


def teacher_for(config: Config) -> float:
    """Train the pair's teacher unless it exists; its real test accuracy."""
    from datafree.build import reset_accelerate
    from datafree.supervised import recorded_teacher_accuracy, train_teacher

    path = Path(config.teacher_checkpoint)
    if not path.exists():
        print(f"== training teacher {config.teacher.arch} ({config.teacher_training.epochs} epochs)", flush=True)
        train_teacher(config)
        reset_accelerate()
    return recorded_teacher_accuracy(path)


def run_pair(config: Config, seeds: int, minutes: float, root: Path, first_seed: int = 0, part: str = "other",
             teacher: str = "") -> dict:  # fmt: skip
    """The pair's seeds, summarized as a table row (``part``: of the zoo; ``teacher``: its name in the table)."""
    from datafree.build import reset_accelerate
    from datafree.supervised import ensure_for_recipe
    from datafree.data import dataset_info
    from datafree.io.results import commit_of
    from datafree.pipeline import distill_from_config

    code_commit = commit_of(Path(__file__).resolve().parents[2])
    teacher_acc = teacher_for(config)
    ensure_for_recipe(config)  # statistics the recipe reads that the teacher's file predates (e.g. its outputs)
    runs = []
    for seed in range(first_seed, first_seed + seeds):
        c = copy.deepcopy(config)
        t = c.train
        t.seed, t.output_dir, t.overwrite, t.max_minutes = seed, str(root / c.name / f"seed_{seed}"), True, minutes
        print(f"== {c.name}, seed {seed}", flush=True)
        start = time.perf_counter()
        results = distill_from_config(c)
        reset_accelerate()
        results["total_s"], results["seed"] = round(time.perf_counter() - start, 1), seed
        results["commit"] = code_commit  # the code that ran (a snapshot's, when run from one), kept by --record
        runs.append(results)
    info = dataset_info(config.data.like or config.data.name)
    head = {"pair": config.name, "part": part, "teacher": teacher or config.teacher.arch, "student": config.student.arch,
            "image_size": info.image_size, "class_names": list(info.class_names),  # the pair's dataset, e.g. 100 classes
            "uses": runs[0].get("uses", []), "teacher_acc": teacher_acc}  # fmt: skip
    return summary(head, runs)


def summary(head: dict, runs: list[dict]) -> dict:
    """A table row: ``head`` (the pair, its teacher's accuracy, what it read) and what its runs' results.json
    give, over the seeds (accuracy spread, the worst class on the mean of the seeds, coverage, steps, time)."""
    from datafree.report import spread, top_confusion

    student = [r["class_acc"]["student"] for r in runs]
    teacher = runs[0]["class_acc"]["teacher"]
    mean_per_class = [sum(s[k] for s in student) / len(student) for k in range(len(teacher))]
    worst = min(range(len(teacher)), key=lambda k: mean_per_class[k])
    confused = None  # where the worst class's images went, over the seeds' student confusion matrices
    if all(r.get("confusion") for r in runs):
        summed = [[sum(r["confusion"]["student"][i][j] for r in runs) for j in range(len(teacher))]
                  for i in range(len(teacher))]  # fmt: skip
        confused = top_confusion(summed, worst)
    return {**head, "final": spread([r["student_acc_final"] for r in runs]),
            "best": spread([r["student_acc_best"] for r in runs]), "worst_class": worst,
            "worst_class_student": mean_per_class[worst], "worst_class_teacher": teacher[worst],
            "worst_class_mostly_as": list(confused) if confused else None,
            "classes_below_half_teacher": [k for k in range(len(teacher)) if mean_per_class[k] < teacher[k] / 2],
            "min_coverage": [min(r["class_coverage"]) for r in runs], "steps": [r["steps"] for r in runs],
            "wall_s": [r["total_s"] for r in runs], "runs": runs}  # fmt: skip


def table(rows: list[dict], names: list[str]) -> str:
    """One table per part of the zoo (tuned, held-out, other pairs), each with its mean over pairs below it."""
    parts = list(dict.fromkeys(r.get("part", "other") for r in rows))
    if parts == ["other"]:
        return part_table(rows, names)
    sections = []
    for part in parts:
        some = [r for r in rows if r.get("part", "other") == part]
        gaps = [r["teacher_acc"] - r["final"]["mean"] for r in some]
        sections.append(f"**{part}** ({len(some)} pairs): student final {100 * mean_of(r['final']['mean'] for r in some):.2f}% "
                        f"on average, {100 * mean_of(gaps):.2f} points under the teachers (most {100 * max(gaps):.2f})\n\n"
                        f"{part_table(some, names)}")  # fmt: skip
    return "\n\n".join(sections)


def mean_of(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def part_table(rows: list[dict], names: list[str]) -> str:
    from datafree.data import dataset_info

    pct = lambda s: f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"  # noqa: E731
    lines = ["| teacher -> student | input | teacher | student final | student best | worst class: student / teacher "
             "| classes < half the teacher's | rarest class share (1/K = balanced) | steps | wall s per seed "
             "| read beyond the weights |",
             "|---|---|---:|---:|---:|---|---|---:|---|---|---|"]  # fmt: skip
    for r in rows:
        k, names_here = r["worst_class"], r.get("class_names") or names  # a pair on another dataset: its own classes
        below = class_list(r["classes_below_half_teacher"], names_here)
        mostly = r.get("worst_class_mostly_as")
        mostly = f" (mostly as {names_here[mostly[0]]}, {100 * mostly[1]:.0f}%)" if mostly else ""
        uses = ", ".join(short_use(u) for u in (r["uses"] if "uses" in r else r["runs"][0].get("uses", []))) or "nothing"
        size = r.get("image_size") or dataset_info(r["runs"][0].get("dataset", "fashion-mnist")).image_size
        lines.append(f"| {r['teacher']} -> {r['student']} | {size}x{size} | {100 * r['teacher_acc']:.2f} | {pct(r['final'])} | "
                     f"{pct(r['best'])} | {names_here[k]}: {100 * r['worst_class_student']:.1f} / "
                     f"{100 * r['worst_class_teacher']:.1f}{mostly} | {below} | {min(r['min_coverage']):.3f} | "
                     f"{'/'.join(map(str, r['steps']))} | {'/'.join(f'{w:.0f}' for w in r['wall_s'])} | {uses} |")  # fmt: skip
    return "\n".join(lines)


def short_use(use: str) -> str:
    """A results.json "uses" line as a table cell: which statistics, not the file path."""
    if "BatchNorm" in use:
        return "BN statistics"
    if "teacher outputs" in use:
        return "recorded per-class outputs" + (" (passed)" if "passed" in use else "")
    if "penultimate features" in use:
        return "recorded per-class penultimate" + (" (passed)" if "passed" in use else "")
    if "spread between images" in use:
        return "recorded per-class spread between images" + (" (passed)" if "passed" in use else "")
    return ("recorded per-class stats" if "per-class" in use else "recorded stats") + (" (passed)" if "passed" in use else "")


def same_recipe(saved: dict) -> str:
    """A results.json's recipe by its file name: parts run from another checkout (a snapshot) still merge."""
    return Path(saved["recipe"]).name.removesuffix(".toml")


def main(argv: list[str] | None = None, prog: str = "python runs/bench_teachers.py") -> int:
    """``prog``: how the table's command line names this program (``datafree bench zoo`` from the CLI). Bad input
    (a recipe, a dataset not on this machine, a results file that does not merge) ends in one line, not a traceback."""
    from datafree.config import ConfigError
    from datafree.data import DataMissingError
    from datafree.io.checkpoint import CheckpointError
    from datafree.trainer import NonFiniteLossError

    try:
        return _main(argv, prog)
    except (ConfigError, CheckpointError, DataMissingError, NonFiniteLossError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None, prog: str) -> int:
    from datafree.io.checkpoint import atomic_write_text
    from datafree.data import dataset_info
    from datafree.pipeline import hardware

    parser = bench_parser(__doc__, recipe="zoo", seeds=3, output_root="outputs/bench_teachers")  # overrides: an
    # ablation on the whole zoo, e.g. --generator.conditional false
    parser.add_argument("--part", default="all", choices=sorted(PARTS),
                        help="the zoo's part: tuned (what recipe changes are measured on), held-out (never tuned on), all")
    parser.add_argument("--pairs", default="", help="comma-separated teacher:student registry names (instead of --part)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="wall-time budget of each run (its step count fixed before step 0)")
    parser.add_argument("--teacher-epochs", type=int, default=0, help="teacher training epochs (default: the recipe's)")
    parser.add_argument("--preset", default="", help="lay the recipe over this preset instead (e.g. strict)")
    parser.add_argument("--table-only", action="store_true", help="rewrite table.md from --output-root's results.json")
    parser.add_argument("--merge", default="", help="with --table-only: comma-separated output roots (or "
                        "results/NAME.json files --record wrote) whose rows (pairs run as separate processes, e.g. one "
                        "per core, or in another sitting) join --output-root's table")  # fmt: skip
    parser.add_argument("--replace", action="store_true", help="with --merge: a pair that an output root has replaces "
                        "its rows from a recorded results file (re-measured after a change) instead of joining them")
    parser.add_argument("--pool", action="store_true", help="with --merge: one row per pair, over the runs of every "
                        "root (e.g. seeds 3-5 run later with --first-seed 3 beside seeds 0-2)")  # fmt: skip
    args = parse(parser, argv, owned={"train.seed": "--seeds / --first-seed", "train.max_minutes": "--minutes",
                                      "train.output_dir": "--output-root", "teacher.arch": "--pairs",
                                      "student.arch": "--pairs"})  # fmt: skip
    root = Path(args.output_root)
    if (args.pool or args.replace) and not (args.table_only and args.merge):
        parser.error("--pool / --replace act on the rows of --merge's parts: give them with --table-only --merge ROOT,ROOT")
    if args.table_only:
        parts = [Path(p) for p in args.merge.split(",") if p] or [root]
        saved = load_part(parts[0])
        lines, made_by = [saved["hardware"]], runs_commands(saved)
        for part in parts[1:]:
            other = load_part(part)
            if (same_recipe(other), other.get("preset"), other["minutes"]) != (same_recipe(saved), saved.get("preset"), saved["minutes"]):
                parser.error(f"--merge: {part} ran another recipe, preset or budget than {parts[0]}")
            saved["rows"] += other["rows"]
            lines.append(other["hardware"])
            made_by += runs_commands(other)
            saved["earlier"] = [*saved.get("earlier", []), *other.get("earlier", [])]
        rows = replaced(saved["rows"]) if args.replace else saved["rows"]
        rows = [{k: v for k, v in row.items() if k != "recorded"} for row in (pooled(rows) if args.pool else rows)]
        if args.pairs:  # only these pairs of the merged parts (a pair dropped from a recorded table)
            try:
                rows, made_by = only_pairs(rows, made_by, args.pairs)
            except ValueError as err:
                parser.error(str(err))
        counts = [len(r["runs"]) or len(r["final_per_seed"]) for r in rows]  # a pooled pair may have more seeds
        args.recipe, minutes = saved["recipe"], saved["minutes"]
        seeds = counts[0] if len(set(counts)) == 1 else "/".join(map(str, counts))
        args.smoke = saved.get("smoke", False)
        command = "` and `".join(made_by) or saved.get("command", "")  # the runs' commands (a record's own: earlier)
        base, hardware_line = load_recipe(args.recipe, preset=saved.get("preset")), saved["hardware"]
        earlier = saved.get("earlier", [])  # the provenance of recorded files merged in
        threads = runs_threads(lines)  # the runs', not this process's
    else:
        earlier, threads, made_by = [], None, []  # None: this process's, which ran the pairs
        names_of_pairs = [p for p in (args.pairs or PARTS[args.part]).split(",") if p]
        pairs = [parse_pair(p) for p in names_of_pairs]
        if any(p is None for p in pairs):
            parser.error(f"--pairs takes teacher[#training_key=value]:student[@dataset] names, got {args.pairs!r}")
        base = overridden(load_recipe(args.recipe, preset=args.preset or None), args)
        seeds, hardware_line = args.seeds, hardware()
        command = " ".join([prog, *(sys.argv[1:] if argv is None else argv)])
        minutes = 0.02 if args.smoke and args.minutes == 10.0 else args.minutes
        if args.teacher_epochs:
            base.teacher_training.epochs = args.teacher_epochs
        rows = [run_pair(pair_config(base, t, s, root, args.smoke, d, training), seeds, minutes, root, args.first_seed,
                         part_of(text), t + "".join(f"#{k}={v}" for k, v in training.items()))
                for text, (t, s, d, training) in zip(names_of_pairs, pairs)]  # fmt: skip
    names = list(dataset_info(base.data.name, like=base.data.like or None).class_names)
    text = (f"{table(rows, names)}\n\nRecipe {args.recipe} (preset {base.preset!r}) with each pair's networks and what the "
            f"command below overrides; "
            f"{seeds} seed(s), {minutes} min loop budget per run; {hardware_line}.\n" + (f"\n`{command}`\n" if command else ""))  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "table.md", text)
    if not args.table_only or args.merge:
        atomic_write_text(root / "results.json", json.dumps({"rows": rows, "recipe": args.recipe, "preset": base.preset,
                                                            "hardware": hardware_line, "smoke": args.smoke, "command": command,
                                                            "minutes": minutes, **({"made_by": made_by} if made_by else {})},
                                                           indent=2))  # fmt: skip
    if args.record:
        runs_on = sorted({line.split(";")[0] for line in lines}) if args.table_only else None  # the runs' machines
        path = record_rows(rows, names, args, minutes, base, argv, prog, earlier, threads, made_by, runs_on)
        print(f"figures recorded in {path}")
    print(text)
    return 0


def record_rows(rows: list[dict], names: list[str], args: argparse.Namespace, minutes: float, base: Config,
                argv: list[str] | None, prog: str, earlier: list[dict] | None = None,
                threads: int | str | None = None, made_by: list[str] | None = None,
                runs_on: list[str] | None = None) -> Path:  # fmt: skip
    """The table's figures, per seed, with their provenance (results/NAME.json; runs/tables.py renders it) and that
    of the recorded files merged into it (``earlier``: what made their rows); ``threads``: what the runs computed
    with, where this process did not run them (None: this process's count); ``made_by``: the commands that ran
    the merged output roots' rows (a merge's own command names only the roots); ``runs_on``: a merge's, the machines
    its runs ran on, which the table names instead of the merging process's."""
    from datafree.io.results import record, results_path

    compact = [compact_row(r, names) for r in rows]
    repo = Path.cwd()  # results/NAME.json of the checkout it runs from
    table = {"recipe": recipe_label(args.recipe, repo), "preset": base.preset, "minutes": minutes, "class_names": names,
             "rows": compact, **({"earlier": earlier} if earlier else {}), **({"made_by": made_by} if made_by else {}),
             **({"runs_on": runs_on} if runs_on else {})}  # fmt: skip
    return record(results_path(args.record, repo), table, repo,
                  [prog.removeprefix("python "), *(sys.argv[1:] if argv is None else argv)], threads)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
