"""Model zoo, found by name: ``create_model("resnet34", num_classes=10)``; importing registers every model."""

from datafree.models import alexnet, families, lenet, resnet, zoo  # noqa: F401  (imported for their @register_model side effects)
from datafree.models.registry import create_model, list_models, model_from_spec, register_model

__all__ = ["create_model", "list_models", "model_from_spec", "register_model"]
