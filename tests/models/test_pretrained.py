"""The offline ImageNet backbones: weights fit the architectures exactly, classify real photographs,
and the FCDD nets built on them track their receptive fields exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fcdd.models import build_net, efficientnet, mobilenet
from fcdd.models.base import IMAGENET_MEAN, IMAGENET_STD

skimage_data = pytest.importorskip("skimage.data")
skimage_transform = pytest.importorskip("skimage.transform")

CLASSIFIERS = {
    "mobilenetv2": (mobilenet.MobileNetV2, mobilenet.imagenet_state_dict),
    "efficientnet_lite0": (efficientnet.EfficientNetLite0, efficientnet.imagenet_state_dict),
}
#: photographs that scikit-image ships, and ImageNet classes any of which is a right answer
PHOTOS = {
    "chelsea": {281, 282, 283, 284, 285},  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "coffee": {968, 504, 967},  # cup, coffee mug, espresso
    "rocket": {812, 657, 744},  # space shuttle, missile, projectile
}


def imagenet_input(image: np.ndarray) -> torch.Tensor:
    """The standard evaluation crop: shorter side to 256, centre 224x224, ImageNet normalisation."""
    h, w = image.shape[:2]
    scale = 256 / min(h, w)
    image = skimage_transform.resize(image, (round(h * scale), round(w * scale)), anti_aliasing=True)
    h, w = image.shape[:2]
    top, left = (h - 224) // 2, (w - 224) // 2
    x = torch.tensor(image[top : top + 224, left : left + 224], dtype=torch.float32).permute(2, 0, 1)[None]
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@pytest.fixture(scope="module", params=sorted(CLASSIFIERS))
def classifier(request):
    build, weights = CLASSIFIERS[request.param]
    state = weights("auto")
    if state is None:
        pytest.skip(f"no offline weights installed for {request.param}")
    net = build()
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return request.param, net.eval()


@pytest.mark.parametrize("photo", sorted(PHOTOS))
def test_classifier_recognises_photograph(classifier, photo):
    name, net = classifier
    with torch.no_grad():
        top5 = net(imagenet_input(getattr(skimage_data, photo)())).topk(5).indices[0].tolist()
    assert PHOTOS[photo] & set(top5), f"{name} top-5 for {photo}: {top5}"


def test_every_checkpoint_entry_is_used(classifier):
    name, net = classifier
    state = CLASSIFIERS[name][1]("auto")
    assert set(state) == set(net.state_dict())
    for key, value in net.state_dict().items():
        assert value.shape == state[key].shape, key


@pytest.mark.parametrize("name", ["mobilenetv2", "mobilenetv2_s16", "efficientnet_lite0", "efficientnet_lite0_s16", "efficientnet_lite0_ms"])
def test_fcdd_net_loads_weights_freezes_and_normalises(name):
    net = build_net(name, 1, 64, width=0.5, pretrained="auto")
    if not net.pretrained_loaded:
        pytest.skip("offline weights not installed")
    frozen = net.frozen_prefix()
    assert frozen and all(isinstance(m, nn.Module) for m in frozen)
    n_frozen = sum(p.numel() for m in frozen for p in m.parameters())
    assert 0 < n_frozen < sum(p.numel() for p in net.parameters())
    assert net.normalisation == "imagenet"
    assert torch.allclose(net.input_mean.flatten(), torch.tensor(IMAGENET_MEAN))
    out = net(torch.rand(2, 1, 64, 64))  # grey input becomes three channels
    stride = 8 if "s16" not in name else 16
    assert out.shape == (2, 1, 64 // stride, 64 // stride)
    assert net.receptive_field.jump == stride


def test_weights_from_a_user_file(tmp_path):
    state = mobilenet.imagenet_state_dict("auto")
    if state is None:
        pytest.skip("offline weights not installed")
    path = tmp_path / "mine.pth"
    torch.save({k: v + 1 if k == "features.5.conv.1.0.weight" else v for k, v in state.items()}, path)
    net = build_net("mobilenetv2", 3, 64, pretrained=str(path))
    assert torch.equal(net.features[5].conv[1][0].weight, state["features.5.conv.1.0.weight"] + 1)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        build_net("mobilenetv2", 3, 64, pretrained=str(tmp_path / "nowhere.pth"))


def test_random_init_has_nothing_frozen():
    net = build_net("efficientnet_lite0", 3, 64, pretrained="none")
    assert not net.pretrained_loaded and net.frozen_prefix() == []


def test_multi_scale_net_uses_both_stages_and_trains_only_the_middle_blocks():
    net = build_net("efficientnet_lite0_ms", 3, 64, pretrained="auto")
    if not net.pretrained_loaded:
        pytest.skip("offline weights not installed")
    stem, blocks = net.features
    frozen = {id(p) for m in net.frozen_prefix() for p in m.parameters()}
    trained = {id(p) for m in (blocks[3], blocks[4], net.head) for p in m.parameters()}
    assert trained.isdisjoint(frozen)
    assert frozen | trained == {id(p) for p in net.parameters()}
    net.eval()
    x = torch.rand(1, 3, 64, 64)
    before = net(x)
    for index in (4, 10):  # the fine and the coarse stage both reach the map
        with torch.no_grad():
            weight = blocks[index].convs()[-1].weight
            saved = weight.clone()
            weight.mul_(1.5)
            assert not torch.allclose(net(x), before)
            weight.copy_(saved)
