"""Network definitions behind one factory: `get_model(name, **kw)`."""
from edgeface.nets.registry import get_model, list_models, register_model

__all__ = ["get_model", "list_models", "register_model"]
