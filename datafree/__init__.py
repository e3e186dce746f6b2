"""datafree: data-free knowledge distillation (DAFL) with pluggable distillation losses, on Accelerate."""

__version__ = "0.1.0"


def distill_datafree(*args, **kwargs):
    """See :func:`datafree.api.distill_datafree` (imported lazily so ``import datafree`` stays light)."""
    from datafree.api import distill_datafree as run

    return run(*args, **kwargs)


def load_student(run_dir):
    """See :func:`datafree.model_card.load_student`: a run folder's student, rebuilt and loaded, in eval mode."""
    from datafree.model_card import load_student as load

    return load(run_dir)
