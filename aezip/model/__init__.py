"""The only package that imports torch: architectures, model files, registry, training.

A *model* is a frozen autoencoder for one spatial dimensionality plus the integer
entropy tables of its latents. Its identity is a hash of its canonical content
(configuration, tensors, tables), never of file bytes.
"""

from .registry import find_model, list_models, load_model, model_header, user_model_dir

_RUNTIME = ("Model", "configure_threads", "resolve_device")


def __getattr__(name: str):
    """The names that need torch, imported on first use: finding a model and reading its
    header import no torch."""
    if name in _RUNTIME:
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Model",
    "configure_threads",
    "find_model",
    "list_models",
    "load_model",
    "model_header",
    "resolve_device",
    "user_model_dir",
]
