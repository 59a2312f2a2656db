"""The one typed configuration object of a run.

Every option lives here once, with its type, default and help text. The CLI builds its flags
from these fields, YAML files are checked against them, and the Python API takes the object
itself: ``fcdd.train(Config(data="...", epochs=5))``.

Defaults are the FCDD paper's MVTec-AD settings (224x224, VGG11 with ImageNet weights, confetti
noise, 200 epochs), meant for a GPU. ``configs/cpu-fast.yaml`` is the documented CPU setting.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from fcdd.io import atomic_write_text
from fcdd.presets import PRESETS


def option(default: Any, help: str, choices: tuple | None = None, **kwargs: Any) -> Any:
    metadata = {"help": help, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


@dataclass
class Config:
    # data
    data: str | None = option(None, "data root: an MVTec-style category folder, a folder of categories, or a reader's directory")
    dataset: str = option("mvtec", "data layout or reader (see `fcdd list`)")
    category: str | None = option(None, "category (MVTec/BTAD folder name) or nominal class (index or name) for one-vs-rest sets")
    image_size: int = option(224, "side of the square network input; images and masks are resized to it")
    channels: int = option(0, "1 grey, 3 colour, 0 decide from the images")
    augment_flip: str = option("h", "random flips during training: none, h, v or hv", ("none", "h", "v", "hv"))
    augment_shift: float = option(0.0625, "random translation during training, as a fraction of the image side")
    augment_jitter: float = option(0.1, "random brightness/contrast change during training (0 = off)")
    standardise_images: bool = option(False, "FCDD / HSC nets: standardise every image to a fixed mean and spread before the net (removes exposure differences between photos)")
    augment_noise: float = option(0.0, "standard deviation of Gaussian pixel noise added during training")
    ovr: bool = option(False, "custom layout: one-vs-rest, the nominal class vs all other class folders")
    preset: str | None = option(None, "apply a data-set preset's settings before the other options")
    datadir: str | None = option(None, "where downloadable data sets are stored (presets that can download)")
    download: bool = option(False, "download a torchvision-style data set into --datadir when online")
    # network
    net: str = option("vgg11", "network (see `fcdd list`)")
    width: float = option(1.0, "channel width multiplier of the network (1.0 = paper)")
    pretrained: str = option("auto", "ImageNet weights: 'auto' (find them offline), 'none', or a file path")
    # objective
    objective: str = option("fcdd", "training objective (see `fcdd list`)")
    supervise_mode: str = option("malformed_normal", "where the training anomalies come from (see `fcdd list`)")
    noise_mode: str = option("confetti", "synthetic anomaly / outlier source (see `fcdd list`)")
    noise_mix: list[str] = option(["confetti", "cutpaste_scar"], "noise modes that --noise-mode mix draws from, one per anomalous image (comma separated)")
    noise_dir: str | None = option(None, "folder of outlier images for folder-based noise modes")
    anomaly_fraction: float = option(0.5, "fraction of each training batch turned into anomalies")
    oe_limit: int | None = option(None, "cap on the number of distinct outlier images (mvtec_gt: real defects per defect type, default 1)")
    arch: str | None = option(None, "encoder-decoder of ae / attention-ae (see `fcdd list`); default ae (depth by image size) for ae, vae for attention-ae")
    loss: str = option("mean", "ae / attention-ae reconstruction loss: mean or sum of the squared errors over pixels", ("mean", "sum"))
    ssim: bool = option(False, "ae / attention-ae: add a structural-similarity loss (1 - SSIM, Gaussian window) to the reconstruction loss")
    layer: str | None = option(None, "attention-ae: module whose activations give the attention map (see `fcdd layers`); default: the last encoder stage")
    attention_activation: str = option("abs", "attention-ae: keep positive evidence (relu, as Grad-CAM) or evidence either way (abs; measured better on the synthetic set)", ("relu", "abs"))
    attention_difference: bool = option(False, "attention-ae: subtract the mean attention of the nominal training images from each map")
    # memory bank (patchcore)
    backbone: str = option("efficientnet_lite0", "patchcore: frozen ImageNet backbone of the patch features (efficientnet_lite0, mobilenetv2, vgg11)")
    feature_layers: list[int] = option([], "patchcore: backbone blocks whose maps form the patch features (default: the backbone's last stride-8 and stride-16 blocks)")
    patch_dim: int | None = option(None, "patchcore: pool the patch features to this many channels (default: keep all)")
    coreset: float = option(0.1, "patchcore: fraction of the nominal patch features kept in the memory bank (greedy k-centre coreset; 1 keeps all)")
    coreset_projection: int | None = option(32, "patchcore: dimensions of the random projection the coreset selection measures distances in (none: the features' own; 32 chose the same quality as 128 in a tenth of the time on mvtec_bottle_256)")
    knn_backend: str = option("auto", "patchcore: nearest-neighbour search (auto: faiss for large banks when installed, else torch)", ("auto", "torch", "faiss"))
    patchcore_score: str = option("reweighted", "patchcore: image score, the paper's re-weighted maximum patch distance or the plain maximum", ("reweighted", "max"))
    neighbourhood: int = option(9, "patchcore: bank neighbours of the nearest feature used to re-weight the image score")
    # training
    epochs: int = option(200, "training epochs")
    batch_size: int = option(16, "training batch size")
    optimizer: str = option("adam", "optimiser", ("adam", "sgd"))
    lr: float = option(1e-3, "learning rate")
    weight_decay: float = option(1e-6, "weight decay")
    momentum: float = option(0.9, "SGD momentum")
    milestones: list[int] = option([], "epochs at which the learning rate is multiplied by lr_gamma (comma separated)")
    lr_gamma: float = option(0.1, "learning-rate factor at each milestone")
    seed: int = option(0, "random seed (data order, augmentation, noise and initialisation)")
    device: str = option("auto", "torch device: auto, cpu, cuda, cuda:1, ...")
    threads: int = option(0, "CPU threads for torch (0 = torch's default)")
    precision: str = option("auto", "training arithmetic: autocast to bf16 / fp16 or plain fp32; auto = bf16 on CPUs with bf16 instructions and on CUDA GPUs that have it, else fp16 on CUDA, else fp32 (evaluation stays fp32)", ("auto", "fp32", "bf16", "fp16"))
    channels_last: bool = option(True, "keep images and convolution weights in channels-last memory layout (faster convolutions on CPUs and GPUs; same results)")
    # heatmaps and evaluation
    upsample: str = option("gaussian", "how output maps become heatmaps", ("gaussian", "bilinear"))
    gauss_std: float | None = option(None, "std of the Gaussian upsampling kernel (default: the net's own, a quarter of its receptive field for most)")
    image_score: str = option("mean", "FCDD image score: mean of the output map (paper), max of the heatmap, or mean of its top 1 %", ("mean", "max", "top1"))
    blur_heatmaps: float | None = option(None, "std of a Gaussian blur applied to gradient / reconstruction / patch-distance heatmaps (default: the method's own; 0 for gradient and reconstruction maps, 4 for patchcore)")
    eval_batch_size: int = option(32, "batch size for evaluation and prediction")
    gallery_size: int = option(8, "images per row group in heatmap galleries")
    overlay_alpha: float = option(0.5, "opacity of the heatmap colours laid over images in galleries and report.html (0..1)")
    holdout: float = option(0.1, "fraction of nominal training images kept out of training to calibrate the verdict thresholds")
    target_fpr: float | None = option(None, "calibrate the verdict threshold at this false-positive rate instead of max F1")
    pixel_fpr: float = option(0.01, "calibrate the pixel (defect-mask) threshold so that this fraction of held-out nominal pixels is flagged")
    eval_resolution: str = option("input", "pixel metrics at the network's input size (anomalib's protocol) or at each mask's own resolution (the FCDD paper's)", ("input", "native"))
    # output
    out: str | None = option(None, "run folder to write")
    resume: bool = option(False, "continue an interrupted run from its last checkpoint")
    report: bool = option(True, "write plots, galleries and report.html after evaluation")

    def __post_init__(self) -> None:
        hints = field_types()
        for f in fields(self):  # lists given as comma-separated text (Python API)
            if base_type(hints[f.name])[0] is list and isinstance(getattr(self, f.name), str):
                setattr(self, f.name, coerce(hints[f.name], getattr(self, f.name), f.name))
        for f in fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise ValueError(f"{f.name} must be one of {', '.join(map(str, choices))}, got {value!r}")
        if not 0.0 <= self.anomaly_fraction <= 1.0:
            raise ValueError(f"anomaly_fraction must lie in [0, 1], got {self.anomaly_fraction}")
        if not 0.0 <= self.overlay_alpha <= 1.0:
            raise ValueError(f"overlay_alpha must lie in [0, 1], got {self.overlay_alpha}")
        if self.target_fpr is not None and not 0.0 <= self.target_fpr < 1.0:
            raise ValueError(f"target_fpr must lie in [0, 1), got {self.target_fpr}")
        if not 0.0 <= self.pixel_fpr < 1.0:
            raise ValueError(f"pixel_fpr must lie in [0, 1), got {self.pixel_fpr}")
        if not 0.0 < self.coreset <= 1.0:
            raise ValueError(f"coreset must lie in (0, 1], got {self.coreset}")
        for name in ("image_size", "epochs", "batch_size", "eval_batch_size", "neighbourhood"):
            if getattr(self, name) < (0 if name == "epochs" else 1):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    # --- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> Config:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown option(s) {', '.join(unknown)}; valid options: {', '.join(sorted(known))}")
        values = {k: coerce(field_types()[k], v, f"{source}: {k}") for k, v in values.items()}
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Config:
        return cls.from_dict(read_yaml(path), source=str(path))

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> Config:
        """A preset's values (see ``fcdd.presets``) with ``overrides`` on top, as ``--preset`` does."""
        return cls.from_dict({**PRESETS.get(name), "preset": name, **overrides}, source=f"preset {name}")

    def replace(self, **changes: Any) -> Config:
        return Config.from_dict({**self.to_dict(), **changes})


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of option: value")
    return values


@functools.cache
def field_types() -> dict[str, Any]:
    """Resolved annotations of ``Config`` (read-only; resolved once, as that is slow)."""
    return typing.get_type_hints(Config)


def base_type(annotation: Any) -> tuple[type, bool]:
    """(scalar type, optional?) of a field annotation such as ``int | None``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return base_type(args[0])[0], True
    origin = typing.get_origin(annotation)
    return (origin or annotation), False


def coerce(annotation: Any, value: Any, where: str) -> Any:
    """Turn YAML / CLI text into the field's type, with an error naming the option."""
    kind, optional = base_type(annotation)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional or kind is str:
            return None if optional else value
        raise ValueError(f"{where}: a value is required")
    try:
        if kind is list:
            (item,) = typing.get_args(annotation) or (str,)
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            return [item(v) for v in value]
        if kind is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: cannot read {value!r} as {kind.__name__}") from None
