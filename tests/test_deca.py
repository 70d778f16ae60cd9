"""DECA's coarse encoder: the released deca_model.tar layout, the loader, preprocessing, errors."""

import pytest
import torch
import torch.nn.functional as F

from pvp_runtime.contract.errors import AssetError
from pvp_runtime.fit.encoders import ChannelEstimator
from pvp_runtime.model.channel_estimate import ChannelEstimate
from pvp_runtime.loaders.deca import (CODE_LAYOUT, CODE_SIZE, FFHQ_DECA_CROP, DecaCoarseEncoder, DecaEstimator,
                                      decompose_code, load_channel_estimator, load_deca_encoder)

from asset_builders import deca_checkpoint, deca_e_flame_state, one_torch_thread


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def e_flame():
    return deca_e_flame_state(seed=0)


def reference_code(state: dict, x: torch.Tensor) -> torch.Tensor:
    """A textbook ResNet-50 + MLP written straight from the tensors (no modules), for comparison."""

    def bn(y, name):
        return F.batch_norm(y, state[f"{name}.running_mean"], state[f"{name}.running_var"], state[f"{name}.weight"],
                            state[f"{name}.bias"], training=False, eps=1e-5)

    x = F.relu(bn(F.conv2d(x, state["encoder.conv1.weight"], stride=2, padding=3), "encoder.bn1"))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for stage, blocks in enumerate((3, 4, 6, 3), start=1):
        for block in range(blocks):
            p = f"encoder.layer{stage}.{block}"
            stride = 2 if block == 0 and stage > 1 else 1
            y = F.relu(bn(F.conv2d(x, state[f"{p}.conv1.weight"]), f"{p}.bn1"))
            y = F.relu(bn(F.conv2d(y, state[f"{p}.conv2.weight"], stride=stride, padding=1), f"{p}.bn2"))
            y = bn(F.conv2d(y, state[f"{p}.conv3.weight"]), f"{p}.bn3")
            if block == 0:
                x = bn(F.conv2d(x, state[f"{p}.downsample.0.weight"], stride=stride), f"{p}.downsample.1")
            x = F.relu(y + x)
    features = x.mean(dim=(2, 3))
    hidden = F.relu(F.linear(features, state["layers.0.weight"], state["layers.0.bias"]))
    return F.linear(hidden, state["layers.2.weight"], state["layers.2.bias"])


def test_e_flame_has_the_released_layout(e_flame):
    ours = DecaCoarseEncoder().state_dict()
    assert [(k, tuple(v.shape)) for k, v in ours.items()] == [(k, tuple(v.shape)) for k, v in e_flame.items()]
    shapes = {name: tuple(t.shape) for name, t in ours.items()}
    # Facts of DECA's ResnetEncoder(outsize=236): torchvision ResNet-50 names without fc, then layers.{0,2}.
    assert shapes["encoder.conv1.weight"] == (64, 3, 7, 7)
    assert shapes["encoder.layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert shapes["encoder.layer2.0.conv2.weight"] == (128, 128, 3, 3)
    assert shapes["encoder.layer3.5.conv3.weight"] == (1024, 256, 1, 1)
    assert shapes["encoder.layer4.2.bn3.running_var"] == (2048,)
    assert "encoder.layer3.6.conv1.weight" not in shapes and "encoder.fc.weight" not in shapes
    assert "encoder.layer1.1.downsample.0.weight" not in shapes
    assert shapes["layers.0.weight"] == (1024, 2048) and shapes["layers.2.weight"] == (236, 1024)
    assert sum(p.numel() for p in DecaCoarseEncoder().parameters()) == 25_848_108
    assert CODE_LAYOUT == (("shape", 100), ("tex", 50), ("exp", 50), ("pose", 6), ("cam", 3), ("light", 27))
    assert CODE_SIZE == 236


def test_deca_file_gives_global_pose_jaw_and_expression(tmp_path, e_flame):
    path = deca_checkpoint(tmp_path / "deca_model.tar", e_flame)
    estimator = load_channel_estimator(path, "cpu")
    assert isinstance(estimator, ChannelEstimator) and estimator.name == "DECA coarse encoder ResNet-50 (deca_model.tar)"
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        estimate = estimator(images)
        code = reference_code(e_flame, estimator.preprocess(images))
    assert isinstance(estimate, ChannelEstimate) and estimate.neck is None
    assert code.abs().max() > 0.5 and code[0].sub(code[1]).abs().max() > 1e-3  # a real, input-dependent code
    tol = dict(rtol=0, atol=1e-5 * float(code.abs().max()))
    torch.testing.assert_close(estimate.global_pose, code[:, 200:203], **tol)
    torch.testing.assert_close(estimate.jaw, code[:, 203:206], **tol)
    torch.testing.assert_close(estimate.expression, code[:, 150:200], **tol)
    parts = decompose_code(code)
    assert list(parts) == ["shape", "tex", "exp", "pose", "cam", "light"]
    assert torch.equal(parts["shape"], code[:, :100]) and torch.equal(parts["tex"], code[:, 100:150])
    assert torch.equal(parts["cam"], code[:, 206:209]) and torch.equal(parts["light"], code[:, 209:].reshape(2, 9, 3))


def test_legacy_torch_save_loads_the_same_weights(tmp_path, e_flame):
    zipped = load_deca_encoder(deca_checkpoint(tmp_path / "deca_model.tar", e_flame)).state_dict()
    legacy = load_deca_encoder(deca_checkpoint(tmp_path / "legacy.tar", e_flame, legacy=True)).state_dict()
    assert all(torch.equal(zipped[name], legacy[name]) and torch.equal(zipped[name], e_flame[name]) for name in zipped)


def test_preprocessing_and_gradients(tmp_path, e_flame):
    encoder = load_deca_encoder(deca_checkpoint(tmp_path / "deca_model.tar", e_flame))
    whole = DecaEstimator(encoder, crop=(0, 1, 0, 1))
    x = torch.rand(1, 3, 224, 224) * 2 - 1
    assert torch.equal(whole.preprocess(x), (x + 1) / 2)  # [-1, 1] -> DECA's [0, 1], no resampling at 224
    estimator = DecaEstimator(encoder)
    assert estimator.crop == FFHQ_DECA_CROP
    flat = torch.full((1, 3, 500, 500), 0.5)  # the default box runs past the bottom edge: zeros there
    box = estimator.preprocess(flat)
    assert box.shape == (1, 3, 224, 224)
    assert torch.allclose(box[..., :200, :], torch.tensor(0.75)) and box[..., -1, :].abs().max() < 1e-6
    estimator.train()
    assert not estimator.network.training and not any(p.requires_grad for p in estimator.parameters())
    images = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    out = estimator(images)
    (out.expression.square().sum() + out.jaw.sum() + out.global_pose.sum()).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="crop"):
        DecaEstimator(encoder, crop=(0.5, 0.2, 0, 1))
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        estimator(torch.zeros(3, 64, 64))


def test_a_bare_e_flame_state_dict_loads(tmp_path, e_flame):
    path = tmp_path / "E_flame.pth"
    torch.save(e_flame, path)
    assert isinstance(load_channel_estimator(path).network, DecaCoarseEncoder)


def _refused(path, *words):
    with pytest.raises(AssetError) as info:
        load_channel_estimator(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message, message
    for word in words:
        assert word in message, message
    path.unlink(missing_ok=True)  # full-size files: do not keep them around


def test_deca_errors(tmp_path, e_flame):
    _refused(tmp_path / "missing.tar", "DECA checkpoint", "not found")
    (tmp_path / "empty.tar").write_bytes(b"")
    _refused(tmp_path / "empty.tar", "empty file")
    (tmp_path / "junk.tar").write_bytes(b"not a checkpoint at all")
    _refused(tmp_path / "junk.tar", "expected a DECA checkpoint (deca_model.tar)")

    other = tmp_path / "e4e_ffhq_encode.pt"  # another network's checkpoint
    torch.save({"state_dict": {"encoder.input_layer.0.weight": torch.zeros(64, 3, 3, 3)}, "opts": {}}, other)
    _refused(other, "not a DECA checkpoint", "'E_flame'", "state_dict")

    good = deca_checkpoint(tmp_path / "deca_model.tar", e_flame).read_bytes()
    (tmp_path / "cut.tar").write_bytes(good[: len(good) // 2])
    _refused(tmp_path / "cut.tar", "truncated or corrupt zip archive")
    legacy = deca_checkpoint(tmp_path / "legacy.tar", e_flame, legacy=True)
    legacy.write_bytes(legacy.read_bytes()[:-1000])
    _refused(legacy, "truncated torch checkpoint")

    def variant(name, **change):
        state = dict(e_flame)
        for key, value in change.items():
            key = key.replace("__", ".")
            if value is None:
                del state[key]
            else:
                state[key] = value
        return deca_checkpoint(tmp_path / name, state)

    _refused(variant("missing_tensor.tar", encoder__layer3__5__bn2__running_var=None),
             "lacks tensor 'encoder.layer3.5.bn2.running_var'")
    _refused(variant("head.tar", layers__2__weight=torch.zeros(200, 1024)),
             "'layers.2.weight'", "[200, 1024]", "expected [236, 1024]")
    nan = e_flame["encoder.layer2.1.conv2.weight"].clone()
    nan[0, 0, 0, 0] = float("nan")
    _refused(variant("nan.tar", encoder__layer2__1__conv2__weight=nan), "NaN or infinite")
    _refused(variant("fc.tar", encoder__fc__weight=torch.zeros(1000, 2048)), "unexpected tensor 'encoder.fc.weight'")
    _refused(variant("notensor.tar", encoder__conv1__weight=[1, 2, 3]), "'encoder.conv1.weight'", "not a tensor")
