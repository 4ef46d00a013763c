import os

import numpy as np
import pytest

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")



@pytest.fixture
def field2d():
    from aezip.codec.sample import sample_field

    return sample_field((70, 90), seed=3)


@pytest.fixture
def shared_data():
    if not os.path.isdir(SHARED):
        pytest.skip("../shared/data is not there")
    return SHARED


@pytest.fixture(autouse=True)
def _isolated_models(tmp_path, monkeypatch):
    """Tests never see the user's own model folder."""
    monkeypatch.setenv("AEZIP_MODELS", str(tmp_path / "user-models"))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
