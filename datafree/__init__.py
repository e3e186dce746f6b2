"""datafree: data-free knowledge distillation (DAFL) with pluggable distillation losses."""

__version__ = "0.1.0"
