import json

import pytest

from pvp_runtime.fit.config import ConfigError, FitConfig


def test_defaults_are_the_papers():
    c = FitConfig()
    assert c.pivots.count == 200
    assert (c.projector.steps, c.projector.lr, c.projector.noise_ramp, c.projector.initial_noise_factor,
            c.projector.noise_regularization) == (450, 5e-3, 0.75, 0.05, 1e5)
    assert (c.pti.lr, c.pti.lpips_threshold, c.pti.max_epochs, c.pti.locality_alpha, c.pti.locality_truncation,
            c.pti.locality_l2_weight, c.pti.locality_lpips_weight) == (3e-4, 0.03, 350, 30.0, 0.5, 0.1, 0.1)
    m = c.mapper
    assert (m.mse_weight, m.lpips_weight, m.regularizer_weight, m.identity_weight, m.expression_weight,
            m.pose_weight, m.consistency_weight, m.lr, m.batch_size, m.steps,
            m.expression_perturbation_std) == (10, 10, 0.5, 0.5, 0.1, 0.1, 1.0, 5e-4, 1, 50000, 0.5)
    assert (c.mask.dilation, c.mask.blur, c.mask.sigma) == (31, 51, 5.0)


def test_json_round_trip(tmp_path):
    config = FitConfig().with_overrides({"pivots.count": 12, "pti.lr": 1e-4, "mapper.loss_resolution": None,
                                         "seed": 7})
    path = tmp_path / "fit.json"
    config.save(path)
    loaded = FitConfig.load(path)
    assert loaded == config and loaded.mapper.loss_resolution is None and loaded.seed == 7
    # A partial file keeps the defaults for everything it leaves out; ints are accepted as floats.
    path.write_text(json.dumps({"pti": {"lr": 1}}))
    assert FitConfig.load(path).pti.lr == 1.0 and FitConfig.load(path).pivots.count == 200


@pytest.mark.parametrize("data, words", [
    ({"pti": {"lrr": 1}}, ["pti.lrr", "unknown"]),
    ({"nope": {}}, ["nope"]),
    ({"pivots": {"count": "many"}}, ["pivots.count", "must be an int"]),
    ({"pivots": {"count": 2.5}}, ["pivots.count"]),
    ({"pivots": {"count": 0}}, ["pivots.count", "at least 1"]),
    ({"mapper": {"train_noise": 1}}, ["mapper.train_noise", "bool"]),
    ({"mapper": {"tune_generator": "maybe"}}, ["mapper.tune_generator"]),
    ({"mask": {"dilation": 30}}, ["mask.dilation", "odd"]),
    ({"lpips": {"net": "squeeze"}}, ["lpips.net"]),
    ({"scratch": {"resolution": 48}}, ["scratch.resolution", "power of two"]),
    ({"data": {"held_out_fraction": 1.5}}, ["data.held_out_fraction"]),
    ({"pti": None}, ["pti", "object"]),
])
def test_bad_values_name_the_key(data, words):
    with pytest.raises(ConfigError) as info:
        FitConfig.from_dict(data, "my.json")
    message = str(info.value)
    assert message.startswith("my.json: ") and "\n" not in message
    for word in words:
        assert word in message


def test_overrides_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown config option 'pti.nope'"):
        FitConfig().with_overrides({"pti.nope": 1})
    with pytest.raises(ConfigError, match="unknown config section"):
        FitConfig().with_overrides({"nothing.lr": 1})
    with pytest.raises(ConfigError, match="not found"):
        FitConfig.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ConfigError, match="bad.json: not a readable JSON config"):
        FitConfig.load(tmp_path / "bad.json")
