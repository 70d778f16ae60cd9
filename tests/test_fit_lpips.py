"""Our LPIPS: the published linear weights, the torchvision backbone layout, the offline fallback.

(Checked outside the test suite against the lpips package's own forward code,
fed the same backbone through a stand-in torchvision: max difference 1.5e-8.)
"""

import argparse
import logging
import os
import pickle

import pytest
import torch

from pvp_runtime.contract.errors import PVPError
from pvp_runtime.fit import lpips as lp


def _fake_torchvision_state(net, seed=3, classifier=True):
    """A state dict in torchvision's key layout (features.N.weight/bias + classifier), random values."""
    gen = torch.Generator().manual_seed(seed)
    state = {f"features.{k}": torch.randn(v.shape, generator=gen) * 0.05
             for k, v in lp.FEATURE_BUILDERS[net]().state_dict().items()}
    if classifier:
        state["classifier.0.weight"] = torch.randn(8, 4, generator=gen)
    return state


def test_linear_weights_come_from_the_installed_package():
    for net in ("vgg", "alex"):
        path = lp.find_linear_weights(net)
        assert path is not None and path.parts[-3:] == ("weights", "v0.1", f"{net}.pth")
        state = lp.read_linear_state(path, net)
        assert all(state[f"lin{k}.model.1.weight"].shape[1] == c for k, c in enumerate(lp.TRUNKS[net].channels))


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_backbone_from_hub_cache_is_found_and_used(tmp_path, monkeypatch, net, caplog):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with caplog.at_level(logging.WARNING):
        random = lp.load_lpips(net)
    assert not random.pretrained and "RANDOM" in random.provenance["backbone"]
    assert any("NO PRETRAINED BACKBONE" in r.message for r in caplog.records)
    (tmp_path / "checkpoints").mkdir()
    state = _fake_torchvision_state(net)
    torch.save(state, tmp_path / "checkpoints" / lp.TRUNKS[net].hub_file)
    pretrained = lp.load_lpips(net)
    assert pretrained.pretrained and lp.TRUNKS[net].hub_file in pretrained.provenance["backbone"]
    assert torch.equal(pretrained.stages[0][0].weight, state["features.0.weight"])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    assert not torch.allclose(pretrained(x, y), random(x, y))


def test_distance_properties():
    features = {k[len("features."):]: v for k, v in _fake_torchvision_state("vgg", classifier=False).items()}
    metric = lp.LPIPS("vgg", features, lp.read_linear_state(lp.find_linear_weights("vgg"), "vgg"))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=gen) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)
    z = torch.rand(3, 3, 32, 32, generator=gen) * 2 - 1
    assert torch.allclose(metric(x, x), torch.zeros(3), atol=1e-6)
    assert torch.allclose(metric(x, y), metric(y, x), atol=1e-6)
    near, far = metric(x, y), metric(x, z)
    assert (near > 0).all() and (far > near).all()
    # Gradients reach the inputs, never the frozen network.
    x_req = x.clone().requires_grad_(True)
    metric(x_req, z).sum().backward()
    assert x_req.grad.abs().sum() > 0 and all(p.grad is None for p in metric.parameters())


def test_explicit_backbone_path_and_bad_files(tmp_path):
    good = tmp_path / "vgg.pth"
    torch.save(_fake_torchvision_state("vgg"), good)
    assert str(good) in lp.load_lpips("vgg", good).provenance["backbone"]
    with pytest.raises(PVPError, match="missing.pth: LPIPS backbone file not found"):
        lp.load_lpips("vgg", tmp_path / "missing.pth")
    wrong = tmp_path / "alex_as_vgg.pth"
    torch.save(_fake_torchvision_state("alex"), wrong)
    with pytest.raises(PVPError, match="alex_as_vgg.pth: tensor 'features.0.weight' has shape"):
        lp.load_lpips("vgg", wrong)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(PVPError, match="truncated.pth: .*vgg backbone checkpoint"):
        lp.load_lpips("vgg", truncated)
    with pytest.raises(PVPError, match="unknown LPIPS network"):
        lp.load_lpips("squeeze")


class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("layout", ["pickle", "zip", "legacy"])
def test_pickled_code_in_a_backbone_file_is_refused_by_the_allow_list(tmp_path, layout):
    """The trunk goes through the same allow-list as every other pickle: one error, naming the file."""
    marker = tmp_path / "pwned"
    state = {**_fake_torchvision_state("alex", classifier=False), "extra": _RunsCommand(f"touch {marker}")}
    path = tmp_path / "evil.pth"
    if layout == "pickle":
        path.write_bytes(pickle.dumps(state, protocol=2))
    else:
        torch.save(state, path, _use_new_zipfile_serialization=layout == "zip")
    with pytest.raises(PVPError) as error:
        lp.load_lpips("alex", path)
    message = str(error.value)
    assert message.startswith(f"{path}: refused to load {os.system.__module__}.system: it is not on the allow-list")
    assert "\n" not in message and not marker.exists()


@pytest.mark.parametrize("legacy", [False, True])
def test_a_state_dict_backbone_file_loads_through_the_allow_list(tmp_path, legacy):
    # With training options beside the weights, as fine-tuned trunks often carry: data the
    # allow-list reads for every other checkpoint (weights_only=True refused it).
    state = {**_fake_torchvision_state("alex"), "args": argparse.Namespace(lr=0.01, epochs=90)}
    path = tmp_path / "alex.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    backbone = lp.read_backbone_state(path, "alex")
    assert backbone.keys() == lp.alexnet_features().state_dict().keys()
    assert all(torch.equal(backbone[k], state[f"features.{k}"]) for k in backbone)


def test_area_downsample():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert lp.area_downsample(x, 8) is x
    assert torch.equal(lp.area_downsample(x, 2), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
