"""The FCDD paper's MVTec-AD recipe as ``--preset mvtec``, and the options it is made of:
``accumulate``, ``lr_decay``, ``epoch_repeats``, ``load_size`` (crop or resize), the relative pixel
noise and ``preprocessing: lcn_minmax`` (LCN + min-max inside the net, its range in the snapshot)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import fcdd
from fcdd.config import Config
from fcdd.data.base import ImageSet
from fcdd.data.mvtec import MVTecLayout
from fcdd.data.supervision import Unsupervised
from fcdd.data.transforms import Augment, crop_or_resize, pixel_noise
from fcdd.export import export, runner
from fcdd.methods.base import Method
from fcdd.models import build_net
from fcdd.models.base import local_contrast_normalise
from fcdd.models.vgg import VGG11FCDD
from fcdd.training.trainer import Trainer, accumulation_plan

ROOT = Path(__file__).resolve().parents[1]

#: the reference's MVTec-AD setting (DefaultMvtecConfig, ADMvTec 'lcnaug1', FCDD_CNN224_VGG_F)
RECIPE = dict(
    dataset="mvtec", image_size=224, load_size=240, net="vgg11", pretrained="auto", frozen_bn="adapt",
    preprocessing="lcn_minmax", objective="fcdd", supervise_mode="malformed_normal", noise_mode="confetti",
    anomaly_fraction=0.5, epochs=200, epoch_repeats=10, batch_size=16, accumulate=8, optimizer="sgd",
    momentum=0.9, lr=1e-3, weight_decay=1e-4, lr_decay=0.985, milestones=[], augment_flip="none",
    augment_shift=0.0, augment_jitter=0.04, augment_noise=0.1, augment_noise_relative=True, augment_noise_p=0.5,
    upsample="gaussian", gauss_std=12.0, image_score="mean", eval_resolution="native",
)


# --- the preset ----------------------------------------------------------------------------------
def test_mvtec_preset_is_the_paper_recipe_field_by_field():
    config = Config.from_preset("mvtec")
    for name, value in RECIPE.items():
        assert getattr(config, name) == value, name
    assert config.optimizer == "sgd"  # Nesterov momentum is what the trainer's SGD always uses


def test_btad_and_custom_follow_the_mvtec_recipe():
    for name in ("btad", "custom"):
        config = Config.from_preset(name)
        assert {k: getattr(config, k) for k in RECIPE if k != "dataset"} == {k: v for k, v in RECIPE.items() if k != "dataset"}


def test_paper_yaml_is_the_preset_written_out():
    from_yaml = Config.from_yaml(ROOT / "configs" / "paper-mvtec.yaml").to_dict()
    from_preset = Config.from_preset("mvtec").to_dict()
    from_preset.pop("preset")
    from_yaml.pop("preset")
    assert from_yaml == from_preset


def test_vgg11_freezes_the_first_four_convolutions_as_the_paper():
    net = VGG11FCDD(3, 224, pretrained=None)
    net.pretrained_loaded = True  # as after loading the ImageNet weights (not needed to count)
    frozen = net.frozen_prefix()
    convs = [m for m in frozen if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256]
    assert isinstance(frozen[-1], nn.MaxPool2d) and len(frozen) == 15
    trained = [m for m in net.features[15:] if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in trained] == [512, 512]


# --- LCN + min-max, hand-computed ------------------------------------------------------------------
def test_lcn_minmax_on_hand_made_images():
    first = torch.tensor([[0.0, 0.25], [0.5, 1.0]]).view(1, 1, 2, 2)
    second = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    # first: mean 0.4375, mean absolute deviation 0.3125 -> (-1.4, -0.6, 0.2, 1.8); second: (1, 1, -1, -1)
    lcn = local_contrast_normalise(torch.cat([first, second]))
    assert torch.allclose(lcn[0].flatten(), torch.tensor([-1.4, -0.6, 0.2, 1.8]))
    assert torch.allclose(lcn[1].flatten(), torch.tensor([1.0, 1.0, -1.0, -1.0]))
    net = build_net("cnn28", 1, 28, width=0.25, preprocessing="lcn_minmax")
    net.fit_input_range(torch.cat([first, second]))
    state = net.state_dict()
    assert torch.allclose(state["input_low"].flatten(), torch.tensor([-1.4]))
    assert torch.allclose(state["input_high"].flatten(), torch.tensor([1.8]))
    # min-max: (x + 1.4) / 3.2
    out = net.normalise(torch.cat([first, second]))
    assert torch.allclose(out[0].flatten(), torch.tensor([0.0, 0.25, 0.5, 1.0]), atol=1e-6)
    assert torch.allclose(out[1].flatten(), torch.tensor([0.75, 0.75, 0.125, 0.125]), atol=1e-6)
    # exposure and contrast do not change what the net sees; a flat image is only centred
    assert torch.allclose(net.normalise(first * 0.5 + 0.2), out[:1], atol=1e-6)
    assert torch.allclose(local_contrast_normalise(torch.full((1, 1, 2, 2), 0.3)), torch.zeros(1, 1, 2, 2))


def test_lcn_buffers_exist_only_with_lcn_minmax():
    assert "input_low" not in build_net("cnn32", 3, 32, width=0.25).state_dict()
    assert {"input_low", "input_high"} <= set(build_net("cnn32", 3, 32, width=0.25, preprocessing="lcn_minmax").state_dict())


# --- crop or resize, hand-computed ------------------------------------------------------------------
#: 1-D positions an 8 -> 4 antialiased bilinear resize averages a linear ramp to: the triangle
#: filter of half-width 2 around 2i + 0.5, cut at the borders and renormalised
RAMP_8_TO_4 = np.array([5 / 7, 2.5, 4.5, 44 / 7])


def test_training_view_is_a_crop_at_every_position_or_the_resize():
    image = (torch.arange(64.0) / 63).view(1, 1, 8, 8)  # pixel (i, j) = (8 i + j) / 63
    n = 400
    images, maps = image.expand(n, 1, 8, 8).clone(), torch.zeros(n, 1, 8, 8)
    out, out_maps = crop_or_resize(images, maps, 4, torch.Generator().manual_seed(0))
    assert out.shape == (n, 1, 4, 4) and out_maps.shape == (n, 1, 4, 4)
    resized = torch.tensor((8 * RAMP_8_TO_4[:, None] + RAMP_8_TO_4[None, :]) / 63, dtype=torch.float32)
    corners = []
    for view in out[:, 0]:
        if torch.allclose(view, resized, atol=1e-5):
            continue
        corner = int(round(float(view[0, 0]) * 63))
        top, left = divmod(corner, 8)
        assert torch.allclose(view, image[0, 0, top : top + 4, left : left + 4]), corner
        corners.append((top, left))
    assert 0.4 < len(corners) / n < 0.6  # half crops, half resizes
    assert {t for t, _ in corners} == {0, 1, 2, 3, 4} and {le for _, le in corners} == {0, 1, 2, 3, 4}


def test_images_of_the_input_size_are_left_alone():
    images = torch.rand(4, 3, 8, 8)
    out, _ = Augment("none", 0.0, 0.0, size=8)(images, torch.zeros(4, 1, 8, 8), torch.Generator().manual_seed(0))
    assert torch.equal(out, images)


def test_reader_decodes_training_images_at_load_size_and_everything_else_resized(tmp_path):
    ramp = (32 * np.arange(8)[:, None] + 4 * np.arange(8)[None, :]).astype(np.uint8)
    for folder in ("train/good", "test/good"):
        (tmp_path / folder).mkdir(parents=True)
        Image.fromarray(ramp).save(tmp_path / folder / "a.png")
    train, test = MVTecLayout(tmp_path).load(4, 1, load_size=8)
    assert np.array_equal(train.loaded[0, 0].numpy(), ramp)
    expected = np.rint(32 * RAMP_8_TO_4[:, None] + 4 * RAMP_8_TO_4[None, :])  # the resize, hand-computed
    assert np.array_equal(train.images[0, 0].numpy(), expected)
    assert np.array_equal(test.images[0, 0].numpy(), expected) and test.loaded is None
    assert train.subset([0]).loaded.shape == (1, 1, 8, 8)


def test_relative_noise_scales_with_each_image_and_hits_a_share_of_them():
    images = torch.cat([torch.rand(500, 1, 16, 16) * 0.1, torch.rand(500, 1, 16, 16)])
    noise = pixel_noise(images, 0.1, True, 0.5, torch.Generator().manual_seed(0))
    hit = noise.flatten(1).abs().amax(1) > 0
    assert 0.4 < float(hit.float().mean()) < 0.6
    ratio = noise.flatten(1).std(1) / images.flatten(1).std(1)
    assert torch.allclose(ratio[hit], torch.full_like(ratio[hit], 0.1), rtol=0.2)


# --- the training loop's options on a tiny net without batch norm ---------------------------------
class Tiny(Method):
    """A 3x3 convolution and its mean square: no batch statistics, so batches may be split."""

    def __init__(self, config: Config, in_channels: int) -> None:
        super().__init__(config, in_channels)
        self.conv = nn.Conv2d(in_channels, 2, 3)
        self.seen: list[torch.Tensor] = []

    def training_loss(self, images, labels, maps, use_maps):
        self.seen.append(images[:, 0, 0, 0].detach().clone())
        return self.conv(images).pow(2).mean(dim=(1, 2, 3))


def tiny_trainer(**changes) -> tuple[Trainer, list[int]]:
    options = dict(image_size=16, epochs=1, batch_size=8, optimizer="sgd", lr=0.1, weight_decay=0.0, augment_flip="none",
                   augment_shift=0.0, augment_jitter=0.0, precision="fp32", channels_last=False, device="cpu")
    config = Config(**{**options, **changes})
    torch.manual_seed(0)
    trainer = Trainer(config, Tiny(config, 1), Unsupervised(config, None), torch.device("cpu"))
    steps: list[int] = []
    trainer.optimizer.register_step_post_hook(lambda *_: steps.append(1))
    return trainer, steps


def image_set(n: int) -> ImageSet:
    """Image i is constant i * 8 (so ``Tiny.seen`` tells which images a batch held), plus texture."""
    torch.manual_seed(1)
    texture = torch.randint(0, 8, (n, 1, 16, 16), dtype=torch.uint8)
    texture[:, :, 0, 0] = 0
    images = torch.arange(n, dtype=torch.uint8).mul(8).view(n, 1, 1, 1) + texture
    return ImageSet(images, torch.zeros(n, dtype=torch.long), torch.zeros(n, 1, 16, 16, dtype=torch.uint8))


def test_two_accumulated_batches_of_8_equal_one_batch_of_16():
    data = image_set(16)
    split, split_steps = tiny_trainer(batch_size=8, accumulate=2)
    whole, whole_steps = tiny_trainer(batch_size=16, accumulate=1)
    start = {k: v.clone() for k, v in whole.method.state_dict().items() if k.startswith("conv")}
    assert all(torch.equal(v, split.method.state_dict()[k]) for k, v in start.items())
    split.train_epoch(data)
    whole.train_epoch(data)
    assert len(split_steps) == len(whole_steps) == 1
    for key in start:
        assert not torch.equal(whole.method.state_dict()[key], start[key])
        torch.testing.assert_close(split.method.state_dict()[key], whole.method.state_dict()[key], rtol=1e-5, atol=1e-7)


def test_accumulation_groups_and_the_last_partial_group():
    assert accumulation_plan([8, 8, 8, 4], 3) == [(1 / 3, False), (1 / 3, False), (1 / 3, True), (1.0, True)]
    assert accumulation_plan([8, 8, 4], 2) == [(0.5, False), (0.5, True), (1.0, True)]
    assert accumulation_plan([16, 4], 2) == [(0.8, False), (0.2, True)]  # as one batch of 20
    trainer, steps = tiny_trainer(batch_size=8, accumulate=2)
    trainer.train_epoch(image_set(20))  # batches of 8, 8, 4: groups (8, 8) and (4)
    assert len(steps) == 2


def test_lr_decay_multiplies_the_rate_after_every_epoch_and_composes_with_milestones():
    trainer, _ = tiny_trainer(lr=1e-3, lr_decay=0.985, epochs=4)
    data = image_set(16)
    for k in range(1, 4):
        trainer.train_epoch(data)
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.985**k, rel=1e-12)
    assert trainer.history.lr == pytest.approx([1e-3 * 0.985**k for k in range(3)], rel=1e-12)
    both, _ = tiny_trainer(lr=1e-3, lr_decay=0.985, milestones=[2], lr_gamma=0.1, epochs=4)
    for _ in range(3):
        both.train_epoch(data)
    assert both.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.985**3 * 0.1, rel=1e-12)
    restored, _ = tiny_trainer(lr=1e-3, lr_decay=0.985, milestones=[2], lr_gamma=0.1, epochs=4)
    restored.optimizer.load_state_dict(both.optimizer.state_dict())
    restored.lr_decay.load_state_dict(both.state()["lr_decay"])
    restored.scheduler.load_state_dict(both.state()["scheduler"])
    both.train_epoch(data)
    restored.train_epoch(data)
    assert restored.optimizer.param_groups[0]["lr"] == both.optimizer.param_groups[0]["lr"]


def test_epoch_repeats_pass_over_every_image_that_many_times():
    data = image_set(16)
    once, once_steps = tiny_trainer()
    once.train_epoch(data)
    thrice, thrice_steps = tiny_trainer(epoch_repeats=3)
    thrice.train_epoch(data)
    assert len(once_steps) == 2 and len(thrice_steps) == 6
    seen = torch.cat(thrice.method.seen).mul(255).round().long() // 8
    assert torch.equal(torch.bincount(seen, minlength=16), torch.full((16,), 3))
    first_pass = seen[:16].sort().values
    assert not torch.equal(first_pass, torch.arange(16))  # one shuffled order over all 48, not 3 passes


# --- end to end: the preset's options, scaled down ----------------------------------------------
def test_tiny_training_with_the_recipe_runs_and_its_snapshot_scores_the_same(synthetic_root, tmp_path):
    config = Config.from_preset(
        "mvtec", data=str(synthetic_root), out=str(tmp_path / "run"), image_size=32, load_size=36, net="cnn32", width=0.25,
        pretrained="none", epochs=2, epoch_repeats=2, batch_size=4, accumulate=2, eval_batch_size=16, holdout=0.2,
        report=False, device="cpu", precision="fp32",
    )
    run = fcdd.train(config)
    assert run.config.preprocessing == "lcn_minmax" and len(run.history.loss) == 2
    assert run.history.lr == pytest.approx([1e-3, 1e-3 * 0.985])
    net = run.method.net
    lcn = local_contrast_normalise(run.splits.train.images.float() / 255)
    torch.testing.assert_close(net.input_low.flatten().cpu(), lcn.amin(dim=(0, 2, 3)))
    torch.testing.assert_close(net.input_high.flatten().cpu(), lcn.amax(dim=(0, 2, 3)))
    assert run.metrics["pixel_auroc"] is not None
    detector = fcdd.load(tmp_path / "run", device="cpu")
    state = detector.method.state_dict()
    assert torch.equal(state["net.input_low"], net.input_low.cpu()) and torch.equal(state["net.input_high"], net.input_high.cpu())
    scores = detector.score(run.evaluation.paths)
    np.testing.assert_allclose(scores.numpy(), run.evaluation.scores, rtol=1e-5, atol=1e-6)
    # an export carries the LCN and its range: its file scores the test images as the snapshot
    report = export(tmp_path / "run", "torchscript")
    assert report["ok"]
    exported_scores, _ = runner("torchscript", Path(report["path"]))(detector.prepare(run.evaluation.paths))
    np.testing.assert_allclose(np.asarray(exported_scores), scores.numpy(), rtol=1e-5, atol=1e-6)
