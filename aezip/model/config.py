"""What a model configuration may say, checked before anything is built or read (no torch).

A model file, a model embedded in a container and a training checkpoint are inputs like
any other: a forged configuration (channel counts of 10^9) or tensors that do not match
it must be refused as a ModelError before anything large is allocated. The limits are
far above any model aezip trains (the built-in ones use 32 channels, 8 latent channels,
tiles of 64^2, 16^3 or 1024) and far below what would exhaust memory.
"""

from __future__ import annotations

from ..errors import ModelError

ARCH_NAME = "conv-ae-v1"
LIMITS = {"ndim": (1, 3), "tile": (1, 1 << 16), "channels": (1, 1024), "latent_channels": (1, 256), "levels": (0, 10)}
MAX_TILE_VALUES = 1 << 22  # values in one tile (tile ** ndim)
MAX_TABLE_ENTRIES = 1 << 16  # entries of one latent channel's entropy table


def check_config(d: dict, where: str = "model") -> None:
    """ModelError unless ``d`` is a conv-ae-v1 configuration within LIMITS: integer sizes,
    a tile divisible by 2**levels and of at most MAX_TILE_VALUES values."""
    if not isinstance(d, dict):
        raise ModelError(f"{where}: its configuration is not a JSON object; the model is damaged")
    if d.get("arch", ARCH_NAME) != ARCH_NAME:
        raise ModelError(f"{where}: unknown model architecture {d.get('arch')!r}; upgrade aezip to read this model")
    for key, (lo, hi) in LIMITS.items():
        v = d.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ModelError(f"{where}: configuration {key}={v!r} is outside {lo}..{hi}; the model is damaged or "
                             "not an aezip model")
    if d["tile"] % (1 << d["levels"]) or d["tile"] ** d["ndim"] > MAX_TILE_VALUES:
        raise ModelError(f"{where}: tile {d['tile']} does not fit {d['levels']} levels in {d['ndim']}-D "
                         f"(at most {MAX_TILE_VALUES:,} values a tile); the model is damaged")


def tensor_shapes(d: dict) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor of a checked conv-ae-v1 configuration
    (aezip.model.arch.ConvAutoencoder's layers: convolutions at even indices)."""
    n, c, latent = d["ndim"], d["channels"], d["latent_channels"]
    shapes: dict[str, tuple[int, ...]] = {}

    def layer(prefix: str, index: int, c_out: int, c_in: int, k: int, transposed: bool = False) -> None:
        shapes[f"{prefix}.{index}.weight"] = ((c_in, c_out) if transposed else (c_out, c_in)) + (k,) * n
        shapes[f"{prefix}.{index}.bias"] = (c_out,)

    c_in = 1
    for i in range(d["levels"]):
        layer("g_a", 2 * i, c, c_in, 3)
        c_in = c
    layer("g_a", 2 * d["levels"], latent, c_in, 3)
    layer("g_s", 0, c, latent, 3)
    for i in range(d["levels"]):
        layer("g_s", 2 * (i + 1), c, c, 4, transposed=True)
    layer("g_s", 2 * (d["levels"] + 1), 1, c, 3)
    return shapes


def check_tensors(d: dict, shapes: dict[str, tuple[int, ...]], where: str = "model") -> None:
    """ModelError unless ``shapes`` (tensor name -> stored shape) are exactly the configuration's."""
    expected = tensor_shapes(d)
    if shapes != expected:
        wrong = sorted(set(shapes) ^ set(expected)) or sorted(k for k in shapes if shapes[k] != expected[k])
        raise ModelError(f"{where}: its tensors do not match its configuration (first: {wrong[0]}); "
                         "the model is damaged")


def check_tables(latent_channels: int, lo_shape: tuple, weights_shape: tuple, where: str = "model") -> None:
    if lo_shape != (latent_channels,) or len(weights_shape) != 2 or weights_shape[0] != latent_channels \
            or not 2 <= weights_shape[1] <= MAX_TABLE_ENTRIES:
        raise ModelError(f"{where}: its entropy tables {lo_shape}, {weights_shape} do not fit "
                         f"{latent_channels} latent channels; the model is damaged")
