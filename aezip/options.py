"""The encoder's settings beyond the mode and bound a user gives: one frozen record that
api.compress creates and passes down (slabs.encode_field -> coding.encode_array -> the
bounded path), instead of module globals that tests and benchmarks patch.

Every field's default is aezip's; the comment above it says why. Tests set others to
reach a path the defaults avoid on small arrays (the model's prediction, say).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .codec.interp import BAND
from .errors import UsageError


@dataclass(frozen=True, kw_only=True)
class EncoderOptions:
    """How the encoder codes. The streams depend on every field but ``band``.

    Examples
    --------
    >>> import numpy as np, aezip
    >>> x = np.cumsum(np.random.default_rng(0).standard_normal((64, 64)), axis=1)
    >>> r = aezip.compress(x, "/tmp/x.aez", psnr=45, force=True, options=aezip.EncoderOptions(psnr_filter=False))
    >>> r.psnr >= 45
    True
    """

    # --psnr quantizes the steps of stride 4 or more within half the bound, as SZ3 does on its
    # coarse levels: their errors spread into the predictions of every finer point, so at equal
    # PSNR (40 and 45 dB) this took 35-57 % off the bytes of the smooth 2-D development fields
    # and -0.2 to 5 % off the real 2-D and 3-D ones; in 1-D (the seismogram) it cost about 7 %,
    # so it is left out there. (q, S): the steps of stride S or more within bound / q; () none.
    psnr_coarse: tuple = (2, 4)
    # --psnr also fits a linear filter applied after decoding (codec.postfilter): at 45 dB the
    # ratio rose by up to 20 % on the development arrays (most where the data are integers or 3-D;
    # benchmarks/equal_psnr.py: 1.374 -> 1.438 of SZ3's ratio over the 7 arrays >= 256 KB).
    psnr_filter: bool = True
    # The model is run on a whole array when, on some tile, its sampled estimate (which leaves
    # the residual uninterpolated, so it overestimates) is below may_pay times the classical
    # cost. On the development arrays at rel 1e-2 the finer per-tile estimate of the whole run
    # put the model at 1.22 times the classical cost or more on every tile; a looser factor
    # (2) ran the model on two more of them for nothing, at 2.5-3 times the compression time.
    may_pay: float = 1.5
    # Whether bounded coding tries the model's prediction: None where the model's typical
    # error (from its validation PSNR) is within a few times the bound, which the built-in
    # models' figures rule out on most data; True: wherever a model may run; False: never.
    try_model: bool | None = None
    # Keep the model's prediction wherever it was tried, even where the array codes larger
    # without it (False: only where it makes the array smaller, aezip's promise of the
    # smallest coding found). For tests of the model's path.
    keep_model: bool = False
    # Targets the interpolation handles at once, so that a band's arrays stay in the
    # processor's cache; the streams are the same whatever it is.
    band: int = BAND

    def __post_init__(self) -> None:
        coarse = tuple(self.psnr_coarse)
        if coarse and not (len(coarse) == 2 and 1 <= coarse[0] < math.inf and isinstance(coarse[1], int)
                           and coarse[1] >= 1 and coarse[1] & (coarse[1] - 1) == 0):
            raise UsageError(f"EncoderOptions: psnr_coarse {self.psnr_coarse!r} is not () or (divisor >= 1, stride a "
                             "power of two)")
        object.__setattr__(self, "psnr_coarse", coarse)
        if not self.may_pay > 0:
            raise UsageError(f"EncoderOptions: may_pay must be positive, got {self.may_pay!r}")
        if self.try_model not in (None, True, False):
            raise UsageError(f"EncoderOptions: try_model must be None, True or False, got {self.try_model!r}")
        if not (isinstance(self.band, int) and self.band >= 1):
            raise UsageError(f"EncoderOptions: band must be a positive integer, got {self.band!r}")


DEFAULT = EncoderOptions()
