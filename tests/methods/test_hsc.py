"""HSC: global output, pseudo-Huber loss, input-gradient heatmaps; trains on generated data."""

from __future__ import annotations

import torch

from fcdd.methods import build_method
from fcdd.training import execute


def test_hsc_trains_and_lowers_its_loss(tiny_config):
    config = tiny_config.replace(objective="hsc", batch_size=4, blur_heatmaps=1.0)
    run = execute(config)
    assert len(run.history.loss) == 2
    assert run.history.loss[1] < run.history.loss[0]
    assert run.evaluation.heatmaps.shape[-2:] == (32, 32)
    assert 0.0 <= run.metrics["image_auroc"] <= 1.0


def test_hsc_scores_and_gradient_heatmaps(tiny_config):
    method = build_method(tiny_config.replace(objective="hsc"), 3).eval()
    assert method.heatmaps_need_grad
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():  # the method takes its own gradients
        scores, heatmaps = method(images)
    assert scores.shape == (3,) and heatmaps.shape == (3, 1, 32, 32)
    assert torch.all(heatmaps >= 0) and heatmaps.sum() > 0
    assert torch.allclose(scores, method.score(images), atol=1e-6)
    # samples are independent: one image's heatmap does not depend on the others in the batch
    _, alone = method(images[:1])
    assert torch.allclose(alone, heatmaps[:1], atol=1e-5)
    labels = torch.tensor([0, 1, 0])
    loss = method.training_loss(images, labels, torch.zeros(3, 1, 32, 32), False)
    assert loss.shape == (3,) and torch.all(loss >= 0)
