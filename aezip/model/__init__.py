"""The only package that imports torch: architectures, model files, registry, training.

A *model* is a frozen autoencoder for one spatial dimensionality plus the integer
entropy tables of its latents. Its identity is a hash of its canonical content
(configuration, tensors, tables), never of file bytes.
"""

from .registry import find_model, list_models, load_model, user_model_dir
from .runtime import Model, configure_threads, resolve_device

__all__ = [
    "Model",
    "configure_threads",
    "find_model",
    "list_models",
    "load_model",
    "resolve_device",
    "user_model_dir",
]
