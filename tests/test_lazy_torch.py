"""torch is imported only when a network runs: importing aezip and every bounded, raw or
constant path stay free of it (a codec loaded by Zarr or numcodecs must be cheap)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SETUP = """
import sys, numpy as np, aezip
rng = np.random.default_rng(0)
x = np.cumsum(np.cumsum(rng.standard_normal((128, 128)), 0), 1).astype(np.float32)
x[3, 4] = np.nan
"""

CASES = {
    "import": "",
    "learned": "aezip.compress(x, OUT)",  # the transform coder needs no network
    "bounded": "aezip.compress(x, OUT, rel=1e-3)",
    "psnr": "aezip.compress(x, OUT, psnr=80)",
    "pw_rel": "aezip.compress(x, OUT, pw_rel=1e-2)",
    "integers": "aezip.compress(np.arange(4096, dtype=np.int32).reshape(64, 64), OUT)",
    "constant": "aezip.compress(np.full((16, 16), 2.5, np.float32), OUT)",
    "raw": "aezip.compress(rng.standard_normal((32, 32)).astype(np.float32), OUT, abs=1e-30)",
}


def _run(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", SETUP + code + "\nassert 'torch' not in sys.modules, 'torch'"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_torch_to_compress_and_decompress(case, tmp_path):
    out = repr(str(tmp_path / "x.aez"))
    code = CASES[case].replace("OUT", out)
    if code:
        code += f"\naezip.decompress({out}, write=False)"
    _run(code)


def test_the_conv_model_still_imports_torch(tmp_path):
    done = subprocess.run([sys.executable, "-c", SETUP + f"aezip.compress(x, {str(tmp_path / 'x.aez')!r}, model='conv-ae-v1')\n"
                           "assert 'torch' in sys.modules"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
