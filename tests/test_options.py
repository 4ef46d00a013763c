"""EncoderOptions: the encoder's settings, checked when made and passed down to every slab."""

import dataclasses

import numpy as np
import pytest

import aezip
from aezip.codec.sample import sample_field


@pytest.mark.parametrize("fields, match", [
    ({"psnr_coarse": (0.5, 4)}, "psnr_coarse"),
    ({"psnr_coarse": (2, 3)}, "psnr_coarse"),
    ({"may_pay": 0}, "may_pay"),
    ({"try_model": "yes"}, "try_model"),
    ({"band": 0}, "band"),
])
def test_bad_options_are_refused_naming_the_field(fields, match):
    with pytest.raises(aezip.UsageError, match=match):
        aezip.EncoderOptions(**fields)


def test_options_are_frozen_keyword_only_and_checked_by_compress(tmp_path):
    o = aezip.EncoderOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.band = 5
    with pytest.raises(TypeError):
        aezip.EncoderOptions(True)
    with pytest.raises(aezip.UsageError, match="options must be an aezip.EncoderOptions"):
        aezip.compress(np.zeros(10), str(tmp_path / "x.aez"), options={"psnr_filter": False})
    assert not (tmp_path / "x.aez").exists()


def test_slabs_coded_in_worker_processes_follow_the_options(tmp_path):
    """The options reach the forked workers: --psnr's tighter coarse steps on slabs by
    default, on none without them."""
    x = sample_field((96, 256), seed=9).astype(np.float32)
    p = str(tmp_path / "x.aez")
    for options, coarse in ((None, True), (aezip.EncoderOptions(psnr_coarse=()), False)):
        aezip.compress(x, p, psnr=45, ndim=2, memory=1 << 20, threads=2, options=options, force=True)
        entries = aezip.info(p).arrays
        assert len(entries) > 2 and any(e.codec.coarse == [2, 4] for e in entries) == coarse
        assert all(e.codec.coarse in ([], [2, 4]) for e in entries)
