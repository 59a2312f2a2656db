"""The fast CPU path (channels-last layout, bf16 autocast) computes what fp32 computes, within
stated tolerances: channels-last 1e-5 (the same arithmetic in another order), bf16 2 % of the
loss and scores (bf16 keeps 8 bits of mantissa, about 0.4 % per rounding)."""

from __future__ import annotations

import pytest
import torch

from fcdd.config import Config
from fcdd.methods import build_method
from fcdd.runtime import autocast, cpu_has_bf16, resolve_precision

CPU = torch.device("cpu")


def small_method(seed: int = 0):
    torch.manual_seed(seed)
    return build_method(Config(net="cnn32", width=0.25, image_size=32, pretrained="none"), 3)


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(8, 3, 32, 32, generator=g), torch.tensor([0, 1] * 4), torch.zeros(8, 1, 32, 32)


def test_channels_last_gives_the_same_loss_gradients_and_scores():
    images, labels, maps = batch()
    reference, fast = small_method(), small_method()
    fast.to(memory_format=torch.channels_last)
    losses = []
    for method, x in ((reference, images), (fast, images.contiguous(memory_format=torch.channels_last))):
        loss = method.training_loss(x, labels, maps, False).mean()
        loss.backward()
        losses.append(loss.detach())
    assert torch.allclose(losses[0], losses[1], atol=1e-5)
    for a, b in zip(reference.parameters(), fast.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4)
    reference.eval(), fast.eval()
    with torch.no_grad():
        s0, h0 = reference(images)
        s1, h1 = fast(images.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(s0, s1, atol=1e-5) and torch.allclose(h0, h1, atol=1e-5)


def test_bf16_autocast_stays_within_two_percent_of_fp32():
    images, labels, maps = batch()
    method = small_method().eval()
    with torch.no_grad():
        reference = method.training_loss(images, labels, maps, False)
        scores, heatmaps = method(images)
        with autocast(CPU, torch.bfloat16):
            fast = method.training_loss(images, labels, maps, False).float()
            fast_scores, fast_heatmaps = method(images)
    assert torch.allclose(fast, reference, rtol=0.02, atol=1e-3)
    assert torch.allclose(fast_scores.float(), scores, rtol=0.02, atol=1e-3)
    scale = float(heatmaps.abs().max())
    assert float((fast_heatmaps.float() - heatmaps).abs().max()) <= 0.02 * scale
    # the order of the scores, which decides AUROC, is kept where they differ by more than that
    far = (scores[:, None] - scores[None]).abs() > 0.05 * scores.abs().max()
    assert torch.equal((fast_scores[:, None] > fast_scores[None])[far], (scores[:, None] > scores[None])[far])


def test_precision_choice():
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    assert resolve_precision("auto", CPU) is (torch.bfloat16 if cpu_has_bf16() else None)
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="precision"):
        Config(precision="fp8")


def test_training_runs_with_each_cpu_precision(tiny_config):
    from fcdd.training import execute

    results = {}
    for precision, channels_last in (("fp32", False), ("bf16", True)):
        run = execute(tiny_config.replace(out=None, precision=precision, channels_last=channels_last, epochs=2))
        results[precision] = run
        assert all(torch.isfinite(torch.tensor(run.history.loss)))
    # two epochs from the same seed: the losses follow each other closely
    assert results["bf16"].history.loss == pytest.approx(results["fp32"].history.loss, rel=0.05)
