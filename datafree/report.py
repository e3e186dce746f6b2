"""report.md + PNGs for one run, and the multi-seed benchmark summary, built only from files on disk.

A run's report reads ``metrics.jsonl``, ``results.json``, ``config.json`` and ``samples/step_*.png`` in the
run folder, so it can be rebuilt at any time (``write_report(run_dir, json.load(open(.../results.json)))``).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from datafree.io.checkpoint import atomic_write_text

MAX_GRIDS = 5  # sample grids shown over training (first, last and evenly spaced between)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All metric lines of a run (``[]`` when it has none yet)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def class_names(run_dir: str | Path, num_classes: int) -> list[str]:
    """Class names of the run's dataset (from its config.json), so plots say "Sneaker" rather than "7"."""
    try:
        from datafree.data import dataset_info

        data = json.loads((Path(run_dir) / "config.json").read_text())["data"]
        names = list(dataset_info(data["name"], like=data.get("like") or None).class_names)
        if len(names) == num_classes:
            return names
    except (OSError, KeyError, ValueError):
        pass
    return [str(k) for k in range(num_classes)]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path.name


def _plot_accuracy(run_dir: Path, metrics: list[dict], results: dict) -> str:
    plt = _pyplot()
    evals = [(m["step"], m["student_acc"]) for m in metrics if "student_acc" in m]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if evals:
        ax.plot(*zip(*evals), marker="o", markersize=3, label="student")
    if results.get("teacher_acc") is not None:
        ax.axhline(results["teacher_acc"], color="gray", linestyle="--", label="teacher (frozen)")
    if results.get("best_step", -1) > 0 and results.get("student_acc_best") is not None:
        ax.plot([results["best_step"]], [results["student_acc_best"]], "r*", markersize=10, label="best evaluation")
    ax.set(xlabel="step", ylabel="real test-set accuracy", title="test accuracy over training")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, run_dir / "accuracy.png")


def _plot_losses(run_dir: Path, metrics: list[dict]) -> str | None:
    """One panel per loss term: the terms have different scales and signs, so they never share an axis."""
    terms = list(dict.fromkeys(k for m in metrics for k in m if k.startswith(("g_", "s_"))))  # s_ after a warm-up
    if not terms:
        return None
    plt = _pyplot()
    cols = min(4, len(terms))
    rows = math.ceil(len(terms) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    steps = [m["step"] for m in metrics]
    for ax, k in zip(axes.flat, terms):
        ax.plot(steps, [m.get(k, math.nan) for m in metrics], color="tab:blue" if k.startswith("g_") else "tab:orange")
        ax.set_title(k + (" (generator)" if k.startswith("g_") else " (student)"), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(terms) :]:
        ax.axis("off")
    return _save(fig, run_dir / "losses.png")


def class_balance(metrics: list[dict], results: dict | None = None) -> list[float]:
    """Fraction of synthetic images per teacher class, over every generator batch of the run: the sum of the
    metrics lines' ``class_hist`` lists, or beyond 100 classes (where a line holds only the histogram's summary)
    results.json's ``class_hist_run``."""
    hists = [m["class_hist"] for m in metrics if isinstance(m.get("class_hist"), list)]
    totals = [sum(col) for col in zip(*hists)] if hists else list((results or {}).get("class_hist_run") or [])
    n = max(sum(totals), 1)
    return [t / n for t in totals]


def effective_classes(fractions: list[float]) -> float:
    """exp(entropy) of the class balance: K when perfectly balanced, 1 when every image is one class."""
    return math.exp(-sum(p * math.log(p) for p in fractions if p > 0)) if fractions else 0.0


def _plot_teacher_view(run_dir: Path, metrics: list[dict], names: list[str], results: dict | None = None) -> str | None:
    overall = class_balance(metrics, results)
    if not overall:
        return None
    hists = [(m["step"], m["class_hist"]) for m in metrics if isinstance(m.get("class_hist"), list)]
    plt = _pyplot()
    k = len(overall)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    frac = [[h / max(sum(hist), 1) for h in hist] for _, hist in hists]
    if hists:
        image = axes[0].imshow(list(map(list, zip(*frac))), aspect="auto", cmap="viridis", interpolation="nearest",
                               extent=(hists[0][0], hists[-1][0], k - 0.5, -0.5))  # fmt: skip
        fig.colorbar(image, ax=axes[0], label="fraction of the images")
        axes[0].set(xlabel="step", ylabel="teacher class", title="teacher argmax between metrics lines")
        if k <= 20:
            axes[0].set_yticks(range(k), names, fontsize=7)
    else:  # the lines hold summaries (more than 100 classes): the rarest and the most frequent class per line
        summaries = [(m["step"], m["class_hist"]) for m in metrics if isinstance(m.get("class_hist"), dict)]
        steps = [step for step, _ in summaries]
        scale = [max(h.get("mean", 0) * k, 1) for _, h in summaries]  # the line's images
        for key in ("min", "max"):
            axes[0].plot(steps, [h.get(key, 0) / n for (_, h), n in zip(summaries, scale)], label=f"{key} class")
        axes[0].axhline(1 / k, color="gray", linestyle="--", label="balanced")
        axes[0].set(xlabel="step", ylabel="fraction of the line's images", title="rarest / most frequent class per line")
        axes[0].legend(fontsize=7)
    axes[1].bar(range(k), overall, label="whole run")
    if frac:
        axes[1].plot(range(k), frac[-1], "k.", label="last line")
    axes[1].axhline(1 / k, color="gray", linestyle="--", label="balanced")
    axes[1].set(xlabel="teacher class", ylabel="fraction", title="class histogram of synthetic images")
    if k <= 20:
        axes[1].set_xticks(range(k), names, rotation=60, ha="right", fontsize=7)
    axes[1].legend(fontsize=7)
    axes[2].plot([m["step"] for m in metrics if "teacher_conf" in m], [m["teacher_conf"] for m in metrics if "teacher_conf" in m])
    axes[2].set(xlabel="step", ylabel="mean max softmax", title="teacher confidence on synthetic batches", ylim=(0, 1.02))
    axes[2].axhline(1 / k, color="gray", linestyle="--")
    axes[2].grid(alpha=0.3)
    return _save(fig, run_dir / "teacher_view.png")


def pick_grids(run_dir: Path, limit: int = MAX_GRIDS) -> list[Path]:
    """Sample grids at evenly spaced points of training, always including the first and the last."""
    grids = sorted((run_dir / "samples").glob("step_*.png"))
    if len(grids) <= limit:
        return grids
    return [grids[round(i * (len(grids) - 1) / (limit - 1))] for i in range(limit)]


def _plot_grids(run_dir: Path, grids: list[Path], names: list[str], image_size: int | None) -> str | None:
    """The saved per-class grids side by side with their step, rows labelled with the teacher's class."""
    if not grids:
        return None
    plt = _pyplot()
    import matplotlib.image as mpimg

    fig, axes = plt.subplots(1, len(grids), figsize=(3.0 * len(grids) + 1.2, 4.2), squeeze=False)
    rows = min(len(names), 20)  # datafree.io.viz shows at most 20 classes, one row each, padding 1
    for i, (ax, path) in enumerate(zip(axes.flat, grids)):
        pixels = mpimg.imread(path)
        ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, interpolation="nearest")
        ax.set_title(f"step {int(path.stem.split('_')[1])}", fontsize=9)
        ax.set_xticks([])
        size = image_size or (pixels.shape[0] - 1) / max(rows, 1) - 1
        if i == 0 and rows:
            ax.set_yticks([1 + r * (size + 1) + size / 2 for r in range(rows)], names[:rows], fontsize=7)
        else:
            ax.set_yticks([])
    return _save(fig, run_dir / "samples_over_training.png")


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def top_confusion(matrix: list[list[int]], k: int) -> tuple[int, float] | None:
    """The class most of true class ``k``'s misclassified images went to, and its share of class k's images."""
    row = matrix[k]
    wrong = [(n, j) for j, n in enumerate(row) if j != k]
    if not wrong or not sum(row):
        return None
    count, j = max(wrong)
    return (j, count / sum(row)) if count else None


def _class_table(class_acc: dict | None, names: list[str], confusion: dict | None = None) -> list[str]:
    """Teacher vs student accuracy per true class, largest gap first: which classes the synthetic data misses,
    and (with the confusion matrix) what the student takes them for."""
    if not class_acc:
        return []
    teacher, student = class_acc["teacher"], class_acc["student"]
    name = lambda k: names[k] if k < len(names) else str(k)  # noqa: E731
    gaps = [(t - s if t is not None and s is not None else 0.0) for t, s in zip(teacher, student)]
    order = sorted(range(len(teacher)), key=lambda k: -gaps[k])
    rows = []
    for k in order:
        row = f"| {name(k)} | {_pct(teacher[k])} | {_pct(student[k])} | {100 * gaps[k]:+.1f} |"
        if confusion:
            top = top_confusion(confusion["student"], k)
            row += f" {name(top[0])} ({100 * top[1]:.1f}%) |" if top else " - |"
        rows.append(row)
    header = "| class | teacher | student | gap (points) |" + (" student's errors mostly as (share of the class) |"
                                                                 if confusion else "")  # fmt: skip
    return ["", "## Accuracy per class (real test set), largest teacher - student gap first", "",
            header, "|---|---:|---:|---:|" + ("---|" if confusion else ""), *rows]


def write_report(run_dir: str | Path, results: dict, spec=None) -> Path:
    """Write ``report.md`` (+ PNGs) in the run folder; every figure in it comes from files in that folder."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    fractions = class_balance(metrics, results)
    k = spec.num_classes if spec is not None else len(fractions)
    names = list(results.get("class_names") or class_names(run_dir, k))
    confs = [m["teacher_conf"] for m in metrics if "teacher_conf" in m]
    lines = [
        f"# Data-free distillation report: {results.get('name', run_dir.name)}",
        "",
        "| | value |",
        "|---|---|",
        f"| teacher accuracy (real test set) | {_pct(results.get('teacher_acc'))} |",
        f"| student accuracy, final step | {_pct(results.get('student_acc_final'))} |",
        f"| student accuracy, best evaluation (step {results.get('best_step')}) | {_pct(results.get('student_acc_best'))} |",
        f"| training steps | {results.get('steps')} |",
        f"| {'real training images drawn' if results.get('transfer') == 'real' else 'synthetic images generated'} | "
        f"{results.get('images_generated')} |",
        f"| wall time | {results.get('wall_time_s')} s |",
        f"| processes / precision | {results.get('num_processes')} / {results.get('mixed_precision')} |",
        f"| hardware | {results.get('hardware')} |",
        "",
        "The final-step accuracy is the honest figure; the best-evaluation figure is what the field usually "
        "reports (it selects the checkpoint on the test set).",
    ]
    if "uses" in results:
        read = "; ".join(results["uses"]) or "nothing beyond the teacher's weights and its input normalization"
        lines += ["", f"Preset `{results.get('preset')}`. Knowledge used beyond the teacher's weights: {read}."]
        lines += [f"Left out: {note}." for note in results.get("terms_off", [])]
        lines += [f"Adapted: {line}." for line in results.get("adapted", [])]
    if results.get("source") == "export":
        lines += ["", f"Trained offline from the exported synthetic set `{results.get('export_dir')}` "
                  f"({results.get('images_generated')} images, KD on the stored teacher logits, "
                  f"{results.get('images_seen')} images seen); no generator in the loop."]  # fmt: skip
    coverage = results.get("class_coverage")
    if coverage:
        low = results.get("classes_under_coverage") or []
        lines += ["", "## Class coverage of the generator (last 10% of steps, the teacher's argmax)", "",
                  " ".join(f"{names[k] if k < len(names) else k}: {100 * share:.1f}%" for k, share in enumerate(coverage)),
                  "", f"**Classes under 1/(3K) of the images: {', '.join(names[k] for k in low)}** -- the student saw "
                  "almost none of them." if low else "Every class made at least 1/(3K) of the images."]  # fmt: skip
    lines += _class_table(results.get("class_acc"), names, results.get("confusion"))
    if metrics:
        lines += ["", "## Accuracy over training", "", f"![accuracy]({_plot_accuracy(run_dir, metrics, results)})"]
        losses = _plot_losses(run_dir, metrics)
        if losses:
            lines += ["", "## Loss terms over training", "", f"![losses]({losses})"]
    view = _plot_teacher_view(run_dir, metrics, names, results) if metrics else None
    if view:
        lines += ["", "## What the teacher sees in the synthetic batches", "",
                  f"- mean teacher confidence (max softmax): first logged batch {confs[0]:.3f}, last {confs[-1]:.3f}",
                  f"- class balance over the run: {effective_classes(fractions):.2f} effective classes of {len(fractions)} "
                  f"(exp of the entropy); rarest {min(fractions):.3f}, most frequent {max(fractions):.3f}", "",
                  f"![teacher view]({view})"]  # fmt: skip
    grids = pick_grids(run_dir)
    overview = _plot_grids(run_dir, grids, names, spec.image_size if spec is not None else None)
    if overview:
        lines += ["", "## Synthetic samples over training (one row per class: the teacher's argmax)", "",
                  f"![samples over training]({overview})", "",
                  "Full-size grids: " + ", ".join(f"[step {int(g.stem.split('_')[1])}](samples/{g.name})" for g in grids)]  # fmt: skip
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


# ---- multi-seed benchmark summary -------------------------------------------------------------------


def spread(values: list[float | None]) -> dict:
    """Mean, sample standard deviation, min and max of per-seed figures (None values are skipped)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0, "values": []}
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": statistics.fmean(vals), "std": std, "min": min(vals), "max": max(vals), "n": len(vals), "values": vals}


def _mean_std(s: dict) -> str:
    return "n/a" if s["mean"] is None else f"{100 * s['mean']:.2f}% ± {100 * s['std']:.2f}"


def _diff(ours: float | None, paper: float | None) -> str:
    return "n/a" if ours is None or paper is None else f"{100 * (ours - paper):+.2f} pp"


def _plot_seeds(out_dir: Path, summary: dict) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for run in summary["runs"]:
        evals = [(m["step"], m["student_acc"]) for m in read_metrics(out_dir / run["run_dir"]) if "student_acc" in m]
        if evals:
            ax.plot(*zip(*evals), label=f"student, seed {run['seed']}", alpha=0.8)
    if summary.get("teacher_acc") is not None:
        ax.axhline(summary["teacher_acc"], color="gray", linestyle="--", label="teacher")
    if summary["paper"].get("student_acc") is not None:
        ax.axhline(summary["paper"]["student_acc"], color="red", linestyle=":", label="paper (best epoch)")
    ax.set(xlabel="step", ylabel="real test-set accuracy", title=f"{summary['recipe']}: student accuracy per seed")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, out_dir / "accuracy_seeds.png")


def write_summary(out_dir: str | Path, summary: dict) -> Path:
    """Benchmark ``report.md`` over seeds: ours (final and best, mean ± std) beside the paper's figure."""
    out_dir = Path(out_dir)
    paper, ref = summary["paper"], summary["paper"].get("reference") or {}
    best, final = summary["student_acc_best"], summary["student_acc_final"]
    n = len(summary["runs"])
    lines = [f"# Benchmark: {summary['recipe']} ({summary['teacher_arch']} -> {summary['student_arch']}, data-free)", ""]
    if summary.get("smoke"):
        lines += ["> **Smoke run** on generated stand-in data with a tiny budget: the numbers below are meaningless; "
                  "it proves that the recipe runs end to end.", ""]  # fmt: skip
    lines += [
        f"Recipe: `{summary['recipe_file']}` (every value cites its source). Dataset: `{summary['dataset']}`. "
        f"{n} seed(s): {', '.join(str(r['seed']) for r in summary['runs'])}.",
        "",
        f"| | ours (mean ± std over {n} seeds) | paper | ours - paper |",
        "|---|---|---|---|",
        f"| teacher accuracy | {_pct(summary.get('teacher_acc'))} ({summary['teacher']['source']}) | "
        f"{_pct(paper.get('teacher_acc'))} | {_diff(summary.get('teacher_acc'), paper.get('teacher_acc'))} |",
        f"| student, **best** evaluation (the field's figure) | {_mean_std(best)} | {_pct(paper.get('student_acc'))} | "
        f"{_diff(best['mean'], paper.get('student_acc'))} |",
        f"| student, **final** step | {_mean_std(final)} | not reported | {_diff(final['mean'], paper.get('student_acc'))} |",
    ]
    if ref:
        lines.append(f"| reference: {ref['label']} | | {_pct(ref.get('student_acc'))} | |")
    lines += [
        "",
        f"Paper figure: {paper.get('source', 'n/a')}.",
        "**best** = the highest real test accuracy over the evaluations made every "
        f"{summary['eval_every']} steps (it selects on the test set; this is what DAFL's official code prints and "
        "what the field reports). **final** = the student after the last step (no test-set selection).",
        "",
        "| seed | teacher | student final | student best (step) | wall time | run report |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary["runs"]:
        lines.append(f"| {r['seed']} | {_pct(r.get('teacher_acc'))} | {_pct(r.get('student_acc_final'))} | "
                     f"{_pct(r.get('student_acc_best'))} ({r.get('best_step')}) | {r.get('wall_time_s')} s | "
                     f"[{r['run_dir']}/report.md]({r['run_dir']}/report.md) |")  # fmt: skip
    spread_txt = lambda s: "n/a" if s["mean"] is None else f"{100 * s['min']:.2f}% .. {100 * s['max']:.2f}%"  # noqa: E731
    lines += [
        "",
        "| budget and machine | value |",
        "|---|---|",
        f"| generator steps per seed (x{summary.get('student_steps_per_step', 1)} student steps each) | {summary['steps']} |",
        f"| batch size x processes | {summary['batch_size']} x {summary['num_processes']} |",
        f"| synthetic images generated per seed / total | {summary['images_generated']} / {summary['images_generated_total']} |",
        f"| range over seeds, best / final | {spread_txt(best)} / {spread_txt(final)} |",
        f"| teacher training wall time | {summary['teacher'].get('wall_time_s', 'n/a (loaded)')} s |",
        f"| distillation wall time, per seed mean / all seeds | {summary['wall_time_s']['mean']:.1f} s / {summary['wall_time_s']['total']:.1f} s |",
        f"| whole benchmark wall time (teacher, seeds, evaluations, reports) | {summary.get('benchmark_wall_time_s', 'n/a')} s |",
        f"| precision | {summary['mixed_precision']} |",
        f"| hardware | {summary['hardware']} |",
        "",
        f"![accuracy per seed]({_plot_seeds(out_dir, summary)})",
        "",
        "Each seed's report (loss terms, class histogram, teacher confidence, sample grids over training) is linked "
        "in the table above.",
    ]
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
