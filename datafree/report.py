"""report.md + PNG plots for one run, built only from metrics.jsonl, results.json and the saved sample grids."""

from __future__ import annotations

import json
from pathlib import Path

from datafree.checkpoint import atomic_write_text


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _plot(run_dir: Path, metrics: list[dict], results: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    steps = [m["step"] for m in metrics]
    evals = [(m["step"], m["student_acc"]) for m in metrics if "student_acc" in m]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if evals:
        ax.plot(*zip(*evals), marker="o", label="student (real test set)")
    if results.get("teacher_acc") is not None:
        ax.axhline(results["teacher_acc"], color="gray", linestyle="--", label="teacher")
    ax.set(xlabel="step", ylabel="test accuracy", title="accuracy")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run_dir / "accuracy.png", dpi=110)
    plt.close(fig)
    made.append("accuracy.png")

    terms = [k for k in metrics[0] if k.startswith(("g_", "s_"))] if metrics else []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for k in terms:
        axes[0 if k.startswith("g_") else 1].plot(steps, [m.get(k) for m in metrics], label=k)
    for ax, title in zip(axes, ("generator loss terms", "student loss terms")):
        ax.set(xlabel="step", title=title)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run_dir / "losses.png", dpi=110)
    plt.close(fig)
    made.append("losses.png")

    hists = [m["class_hist"] for m in metrics if "class_hist" in m]
    if hists:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        last = hists[-1]
        axes[0].bar(range(len(last)), [h / max(sum(last), 1) for h in last])
        axes[0].axhline(1 / len(last), color="gray", linestyle="--")
        axes[0].set(xlabel="class (teacher argmax)", ylabel="fraction", title="class balance, last synthetic batch")
        axes[1].plot(steps, [m.get("teacher_conf") for m in metrics])
        axes[1].set(xlabel="step", ylabel="mean max softmax", title="teacher confidence on synthetic batches")
        axes[1].grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(run_dir / "teacher_view.png", dpi=110)
        plt.close(fig)
        made.append("teacher_view.png")
    return made


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def write_report(run_dir: str | Path, results: dict, spec=None) -> Path:
    """Write ``report.md`` in the run folder; every figure in it comes from files in that folder."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    plots = _plot(run_dir, metrics, results) if metrics else []
    grids = sorted((run_dir / "samples").glob("step_*.png"))
    shown = grids if len(grids) <= 4 else [grids[0], grids[len(grids) // 3], grids[2 * len(grids) // 3], grids[-1]]
    lines = [
        f"# Data-free distillation report: {results.get('name', run_dir.name)}",
        "",
        "| | value |",
        "|---|---|",
        f"| teacher accuracy (real test set) | {_pct(results.get('teacher_acc'))} |",
        f"| student accuracy, final step | {_pct(results.get('student_acc_final'))} |",
        f"| student accuracy, best evaluation (step {results.get('best_step')}) | {_pct(results.get('student_acc_best'))} |",
        f"| generator steps | {results.get('steps')} |",
        f"| synthetic images generated | {results.get('images_generated')} |",
        f"| wall time | {results.get('wall_time_s')} s |",
        f"| processes / precision | {results.get('num_processes')} / {results.get('mixed_precision')} |",
        f"| hardware | {results.get('hardware')} |",
        "",
        "The final-step accuracy is the honest figure; the best-evaluation figure is what the field usually "
        "reports (it selects on the test set).",
        "",
    ]
    lines += [f"![{p}]({p})" for p in plots]
    if shown:
        lines += ["", "## Synthetic samples (one row per class, the teacher's argmax)", ""]
        for grid in shown:
            lines += [f"step {int(grid.stem.split('_')[1])}:", "", f"![{grid.name}](samples/{grid.name})", ""]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
