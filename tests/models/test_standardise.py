from __future__ import annotations

import pytest
import torch

from fcdd.config import Config
from fcdd.methods import build_method
from fcdd.models import build_net


@pytest.mark.parametrize("name,channels", [("cnn32", 3), ("cnn28", 1)])
def test_standardised_net_ignores_exposure(name, channels):
    size = 32 if name == "cnn32" else 28
    torch.manual_seed(0)
    images = torch.rand(4, channels, size, size) * 0.5 + 0.25
    darker = images * 0.6 + 0.05  # another exposure of the same scene, still inside [0, 1]
    plain = build_net(name, channels, size, width=0.25, pretrained="none").eval()
    standard = build_net(name, channels, size, width=0.25, pretrained="none", standardise=True).eval()
    standard.load_state_dict(plain.state_dict())
    with torch.no_grad():
        assert torch.allclose(standard(images), standard(darker), atol=1e-5)
        assert not torch.allclose(plain(images), plain(darker), atol=1e-3)


def test_dataset_statistics_do_not_apply_to_standardised_inputs():
    net = build_net("cnn32", 3, 32, width=0.25, pretrained="none", standardise=True)
    net.set_input_normalisation(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.05, 0.05, 0.05]))
    assert torch.all(net.input_mean == 0.5) and torch.all(net.input_std == 0.25)


def test_the_option_reaches_the_net_of_each_map_objective():
    for objective in ("fcdd", "hsc"):
        config = Config(objective=objective, net="cnn32", width=0.25, image_size=32, pretrained="none", standardise_images=True)
        assert build_method(config, 3).net.standardise_inputs
        assert not build_method(config.replace(standardise_images=False), 3).net.standardise_inputs
