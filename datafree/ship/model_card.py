"""A student a user can ship: ``MODEL_CARD.md`` beside it in every run folder, and :func:`load_student` to rebuild it.

The card says what the student is, how it was made (the teacher, the recipe and preset, what the run read beyond
the teacher's weights: no training image unless ``train.transfer = "real"``), how accurate it is overall and per
class on the evaluation set (with the hardware it was measured on), its size, what it is for, and the limits the
run measured (classes far under the teacher's, classes the generator rarely made). Every figure comes from the
run's own ``results.json``. The card follows the sections of Mitchell et al., "Model Cards for Model Reporting"
(FAT* 2019) that a data-free run can fill; it has no training-data section because there was no training data.

Publishing a run folder on the Hugging Face Hub is ``huggingface_hub``'s folder upload (``pip install
'datafree[hf]'``)::

    from huggingface_hub import upload_folder
    upload_folder(repo_id="me/my-student", folder_path="outputs/fmnist",
                  allow_patterns=["MODEL_CARD.md", "config.json", "results.json", "student_last.safetensors"])

(rename MODEL_CARD.md to README.md in the upload for the Hub to show it: ``path_in_repo`` per file, or a copy).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from datafree.io.checkpoint import atomic_write_text
from datafree.config import Config


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def model_card(config: Config, results: dict, spec) -> str:
    """The card's Markdown, from the run's config and results."""
    names = list(results.get("class_names") or [str(k) for k in range(spec.num_classes)])
    uses = "; ".join(results.get("uses") or []) or "nothing beyond the teacher's weights and its input normalization"
    real = results.get("transfer") == "real"
    lines = [
        f"# Model card: {config.student.arch} distilled from {config.teacher.arch}",
        "",
        "## What it is",
        f"- An image classifier over {spec.num_classes} classes ({', '.join(names[:10])}{' ...' if len(names) > 10 else ''}), "
        f"{results.get('student_params', 0):,} parameters, distilled from a teacher of "
        f"{results.get('teacher_params', 0):,} parameters.",
        f"- Input: {spec.channels} x {spec.image_size} x {spec.image_size} images normalized with mean "
        f"{tuple(round(m, 4) for m in spec.mean)} and std {tuple(round(s, 4) for s in spec.std)}; output: "
        f"{spec.num_classes} logits.",
        "- Rebuild it with `datafree.load_student(\"<this folder>\")` (weights: `student_last.safetensors`, "
        "safetensors; the architecture from `config.json`).",
        "",
        "## How it was made",
        f"- {'Knowledge distillation on real training images (train.transfer = real).' if real else 'Data-free distillation: the student learnt only from images a generator made against the frozen teacher; no training image was used.'}",
        f"- Teacher: {config.teacher.arch}; recipe `{config.name}`, preset `{config.preset}`; {results.get('steps')} steps "
        f"in {results.get('wall_time_s')} s on {results.get('hardware')}.",
        f"- Read beyond the teacher's weights: {uses}.",
        *[f"- Left out: {note}." for note in results.get("terms_off") or []],
        "",
        "## Accuracy",
        f"On the evaluation set of `{config.data.name}`{f' (stand-in like {config.data.like})' if config.data.like else ''}: "
        f"student {_pct(results.get('student_acc_final'))} after its last step (best evaluation "
        f"{_pct(results.get('student_acc_best'))}, selected on that same set); teacher {_pct(results.get('teacher_acc'))}.",
    ]
    class_acc = results.get("class_acc")
    if class_acc:
        lines += ["", "| class | student | teacher |", "|---|---:|---:|"]
        lines += [f"| {names[k]} | {_pct(s)} | {_pct(t)} |"
                  for k, (s, t) in enumerate(zip(class_acc["student"], class_acc["teacher"]))]  # fmt: skip
    lines += ["", "## Intended use and limits",
              f"- For the teacher's task on images like the teacher's inputs ({spec.image_size} px, the normalization "
              "above), where a smaller or faster network is needed. It knows what the teacher knew, no more: it "
              "inherits the teacher's errors and biases, and was never checked against data the teacher did not see."]
    if class_acc:
        weak = [names[k] for k, (s, t) in enumerate(zip(class_acc["student"], class_acc["teacher"]))
                if s is not None and t is not None and s < t / 2]  # fmt: skip
        lines.append(f"- Classes under half the teacher's accuracy: {', '.join(weak) or 'none'}.")
    rare = results.get("classes_under_coverage") or []
    if rare:
        lines.append(f"- Classes the generator rarely made at the end (under 1/(3K) of its images): "
                     f"{', '.join(names[k] for k in rare[:20])}{' ...' if len(rare) > 20 else ''}.")  # fmt: skip
    lines.append("- Accuracy was measured once, on the evaluation set above; other data will differ.")
    return "\n".join(lines) + "\n"


def write_model_card(out: Path, config: Config, results: dict, spec) -> Path:
    path = Path(out) / "MODEL_CARD.md"
    atomic_write_text(path, model_card(config, results, spec))
    return path


def load_student(run_dir: str | Path) -> nn.Module:
    """The run's student, rebuilt from its ``config.json`` (a registry or named architecture, with ``student.kwargs``)
    and its weights (the quantized ones when the run has them, else ``student_last.safetensors``), in eval mode.

    A student that was your own module cannot be rebuilt from a name: a ConfigError says to build it and load the
    weights with ``datafree.io.checkpoint.load_weights``. The folder is untrusted input: JSON and safetensors only."""
    from datafree.ship.deploy import student_of_run

    return student_of_run(Path(run_dir))[0]
