from __future__ import annotations

import math

import pytest
import torch

from fcdd.methods.fcdd import fcdd_loss, fcdd_pixel_loss, neg_log_one_minus_exp, pseudo_huber


def test_pseudo_huber_values():
    phi = torch.tensor([0.0, 1.0, -2.0, 3.0])
    expected = torch.tensor([0.0, math.sqrt(2) - 1, math.sqrt(5) - 1, math.sqrt(10) - 1])
    assert torch.allclose(pseudo_huber(phi), expected)


def test_fcdd_loss_on_hand_computed_maps():
    # nominal map: phi = [[0, 1], [1, 0]] -> A = [[0, s], [s, 0]], s = sqrt(2) - 1, mean A = s / 2
    s = math.sqrt(2) - 1
    a_nominal = pseudo_huber(torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]]))
    # anomalous map: phi = 2 everywhere -> A = sqrt(5) - 1 -> loss = -log(1 - exp(-(sqrt5 - 1)))
    a_anomalous = pseudo_huber(torch.full((1, 1, 2, 2), 2.0))
    loss = fcdd_loss(torch.cat([a_nominal, a_anomalous]), torch.tensor([0, 1]))
    assert loss[0].item() == pytest.approx(s / 2)
    assert loss[1].item() == pytest.approx(-math.log(1 - math.exp(-(math.sqrt(5) - 1))))


def test_anomalous_term_is_stable_near_zero_and_decreasing():
    values = neg_log_one_minus_exp(torch.tensor([0.0, 1e-8, 0.1, 1.0, 10.0]))
    assert torch.isfinite(values).all()
    assert (values[1:] <= values[:-1]).all()


def test_pixel_loss_matches_image_loss_for_nominal_and_weights_defect_pixels():
    a = torch.tensor([[[[0.5, 2.0], [0.5, 0.5]]]])
    zero = torch.zeros(1, 1, 4, 4)
    assert fcdd_pixel_loss(a, zero).item() == pytest.approx(fcdd_loss(a, torch.tensor([0])).item())
    gt = torch.zeros(1, 1, 4, 4)
    gt[..., :2, 2:] = 1  # the top-right output pixel is the defect
    expected = (0.5 * 3 - math.log(1 - math.exp(-2.0))) / 4
    assert fcdd_pixel_loss(a, gt).item() == pytest.approx(expected)


def test_balanced_pixel_loss_weighs_a_defect_by_its_own_area():
    a = torch.full((1, 1, 4, 4), 0.5)
    a[..., 0, 3] = 2.0
    gt = torch.zeros(1, 1, 8, 8)
    gt[..., :2, 6:] = 1  # one of the 16 output pixels is the defect
    anomalous = -math.log(1 - math.exp(-2.0))
    assert fcdd_pixel_loss(a, gt, "balanced").item() == pytest.approx(0.5 * 15 / 16 + anomalous)
    assert fcdd_pixel_loss(a, gt, "mean").item() == pytest.approx((0.5 * 15 + anomalous) / 16)
    assert fcdd_pixel_loss(a, gt, "defect").item() == pytest.approx(anomalous)
    # nominal images (no defect pixels) get the same loss from all three
    zero = torch.zeros(1, 1, 8, 8)
    for how in ("balanced", "defect"):
        assert fcdd_pixel_loss(a, zero, how).item() == pytest.approx(fcdd_pixel_loss(a, zero, "mean").item())
    # in one batch, each image by its own map
    both = fcdd_pixel_loss(torch.cat([a, a]), torch.cat([gt, zero]), "defect")
    assert both.tolist() == pytest.approx([anomalous, (0.5 * 15 + 2.0) / 16])
    # a four times larger defect with the same scores costs the balanced loss the same anomalous term
    big = torch.zeros(1, 1, 8, 8)
    big[..., :4, 4:] = 1
    a_big = torch.full((1, 1, 4, 4), 0.5)
    a_big[..., :2, 2:] = 2.0
    assert fcdd_pixel_loss(a_big, big, "balanced").item() == pytest.approx(0.5 * 12 / 16 + anomalous)


def test_image_score_reductions():
    from fcdd.methods.fcdd import reduce_score

    a = torch.zeros(2, 1, 4, 4)
    a[0, 0, 0, 0] = 8.0
    heat = torch.zeros(2, 1, 20, 20)
    heat[0, 0, :2, :2] = 5.0  # 4 of 400 pixels: exactly the top 1 %
    heat[1] = 1.0
    assert reduce_score(a, heat, "mean").tolist() == [0.5, 0.0]
    assert reduce_score(a, heat, "max").tolist() == [5.0, 1.0]
    assert reduce_score(a, heat, "top1").tolist() == [5.0, 1.0]
