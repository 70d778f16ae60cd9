import numpy as np
import pytest

from pvp_runtime.bundle import random_bundle, save_bundle
from pvp_runtime.contract.channels import ChannelLayout
from pvp_runtime.model.stylegan2 import tiny_config

from alpha_helpers import matte_for
from blender_helpers import SETUP_HINT, blender_version, selected_blender_envs


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


@pytest.fixture(scope="session")
def alpha_bundle_path(tmp_path_factory, tiny_generator_config):
    """The tiny subject with a learnt alpha (``matte_for``): near 0 to near 1 across the crop."""
    bundle = random_bundle(tiny_generator_config, num_pivots=4, num_expressions=10, seed=1, name="alpha",
                           expression_scale=0.05)
    bundle.matte = matte_for(bundle)
    path = tmp_path_factory.mktemp("alpha") / "alpha.pvp"
    save_bundle(bundle, path)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


BLENDERS = selected_blender_envs()


def pytest_report_header(config):
    envs = ", ".join(f"{name} ({python})" for name, python in BLENDERS.items())
    return f"Blender environments (PVP_BLENDER_ENVS): {envs}"


@pytest.fixture(scope="module", params=list(BLENDERS), ids=lambda name: f"blender{name}")
def blender_python(request):
    """The Python of one Blender environment (a `bpy` wheel); the end-to-end tests run once per
    environment.  A missing environment fails (PVP_BLENDER_ENVS narrows the list, see blender_helpers)."""
    name, python = request.param, BLENDERS[request.param]
    version = blender_version(python)
    if version is None:
        hint = SETUP_HINT.get(name, "create it or fix the path")
        pytest.fail(f"Blender {name} environment missing: {python} cannot import bpy. {hint}; "
                    f"or leave it out with PVP_BLENDER_ENVS (e.g. PVP_BLENDER_ENVS=5.0)", pytrace=False)
    assert version.startswith(name + "."), f"{python} has Blender {version}, expected {name}.x"
    return python
