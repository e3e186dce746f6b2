"""Distillation losses, one per file, found by name: ``create_loss("kd", temperature=4)``."""

import importlib
import pkgutil

from datafree.distill.base import DistillLoss, create_loss, list_losses, loss_class, register_loss

# Import every module in this package so each @register_loss runs; adding a loss = adding a file.
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in {"base", "objective"}:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DistillLoss", "create_loss", "list_losses", "loss_class", "register_loss"]
