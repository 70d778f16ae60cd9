import numpy as np
import pytest

from pvp_runtime.bundle import random_bundle, save_bundle
from pvp_runtime.contract.channels import ChannelLayout
from pvp_runtime.model.stylegan2 import tiny_config


@pytest.fixture(scope="session")
def tiny_generator_config():
    return tiny_config(resolution=32, width=32)


@pytest.fixture(scope="session")
def layout():
    return ChannelLayout(10)


@pytest.fixture(scope="session")
def tiny_bundle_path(tmp_path_factory, tiny_generator_config):
    """A 32x32 random subject with 10 expressions and mappers that visibly react."""
    path = tmp_path_factory.mktemp("bundle") / "tiny.pvp"
    save_bundle(random_bundle(tiny_generator_config, num_pivots=4, num_expressions=10, seed=1,
                              name="tiny", expression_scale=0.05), path)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)
