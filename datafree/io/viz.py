"""Pictures of what the generator makes: per-class sample grids, in the data's own (denormalized) colours."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import save_image


def denormalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Map teacher-space images back to [0, 1] pixels for display."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.float() * std_t + mean_t).clamp(0, 1)


def class_grid(images: torch.Tensor, labels: torch.Tensor, num_classes: int, per_class: int = 8,
               max_rows: int = 20) -> torch.Tensor:  # fmt: skip
    """One row per class (the teacher's argmax), up to ``per_class`` images each; empty slots stay black.

    Up to ``max_rows`` classes every class has its row, at the same place at every step. Above it, the rows are
    the lowest-numbered classes that the batch holds: a batch of a many-class teacher holds only a window of its
    classes (datafree/callbacks/rotation.py), and rows for classes 0..19 would show a black grid whenever the
    window lies elsewhere.
    """
    c, h, w = images.shape[1:]
    rows = list(range(num_classes)) if num_classes <= max_rows else labels.unique().tolist()[:max_rows]
    grid = torch.zeros(len(rows) * per_class, c, h, w, dtype=images.dtype, device=images.device)
    for row, k in enumerate(rows):
        members = images[labels == k][:per_class]
        grid[row * per_class : row * per_class + len(members)] = members
    return grid


def save_class_grid(images: torch.Tensor, labels: torch.Tensor, path: str | Path, num_classes: int,
                    mean: tuple[float, ...], std: tuple[float, ...], per_class: int = 8) -> Path:  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = denormalize(images.detach(), mean, std).cpu()
    save_image(class_grid(pixels, labels.cpu(), num_classes, per_class), path, nrow=per_class, padding=1)
    return path


def save_width_plot(layers: dict[str, dict], path: str | Path, title: str = "") -> Path:
    """Bars per layer: the teacher's width and the width a channel search kept (``teacher_width``/``found_width``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(layers)
    teacher = [layers[n]["teacher_width"] for n in names]
    found = [layers[n]["found_width"] for n in names]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(names) + 2), 3.6))
    positions = range(len(names))
    ax.bar(positions, teacher, color="#cccccc", label="teacher")
    ax.bar(positions, found, color="#1f77b4", width=0.6, label="found (kept)")
    ax.set_xticks(list(positions), names, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("output channels")
    ax.set_title(title or "channels kept per layer")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
