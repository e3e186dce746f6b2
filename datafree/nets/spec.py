"""What synthetic images must look like for a teacher: a leaf type every layer may import."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ImageSpec:
    """Shape, classes and input normalization of the teacher's images (and how to display them)."""

    channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    class_names: tuple[str, ...] = ()  # for reports; () = the dataset's, or class ids
