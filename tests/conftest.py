import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _isolated_models(tmp_path, monkeypatch):
    """Tests never see the user's own model folder."""
    monkeypatch.setenv("AEZIP_MODELS", str(tmp_path / "user-models"))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
