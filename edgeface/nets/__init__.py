"""Network definitions behind one factory: `get_model(name, **kw)`; `load_model(path)` for saved ones."""
from edgeface.nets.registry import ArchSpec, get_model, list_models, model_spec, register_model


def load_model(path):
    """Load a saved edgeface model (`model.keras`); imports TensorFlow only when called."""
    from edgeface.nets.io import load_model as _load

    return _load(path)


def save_model(model, path):
    """Save a model atomically (see edgeface.nets.io.save_model)."""
    from edgeface.nets.io import save_model as _save

    return _save(model, path)


__all__ = ["ArchSpec", "get_model", "list_models", "model_spec", "register_model", "load_model", "save_model"]
