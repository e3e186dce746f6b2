"""datafree: data-free knowledge distillation (DAFL) with pluggable distillation losses, on Accelerate."""

__version__ = "0.1.0"

from datafree._moved import install as _install_moved

_install_moved()  # datafree.checkpoint, datafree.feature_stats, ...: the modules' old paths (datafree/_moved.py)


def distill_datafree(*args, **kwargs):
    """See :func:`datafree.api.distill_datafree` (imported lazily so ``import datafree`` stays light)."""
    from datafree.api import distill_datafree as run

    return run(*args, **kwargs)


def load_student(run_dir):
    """See :func:`datafree.ship.model_card.load_student`: a run folder's student, rebuilt and loaded, in eval mode."""
    from datafree.ship.model_card import load_student as load

    return load(run_dir)
