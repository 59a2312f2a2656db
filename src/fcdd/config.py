"""The one typed configuration object of a run.

Every option lives here once, with its type, default and help text. The CLI builds its flags
from these fields, YAML files are checked against them, and the Python API takes the object
itself: ``fcdd.train(Config(data="...", epochs=5))``.

Defaults follow the FCDD paper's MVTec-AD settings in outline (224x224, VGG11 with ImageNet
weights, confetti noise, 200 epochs), meant for a GPU; ``--preset mvtec`` is that paper's recipe
in full (``fcdd.presets``). ``configs/cpu-fast.yaml`` is the documented CPU setting.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from fcdd.io import atomic_write_text
from fcdd.presets import PRESETS

#: the smallest input side every registered net runs at (the EfficientNet-Lite0 cuts need 16;
#: ``tests/test_silent_cases.py`` builds each net at this size); presets go down to 28
MIN_IMAGE_SIZE = 16
#: ``--aspect HEIGHTxWIDTH``: a fixed input shape
FIXED_ASPECT = re.compile(r"(\d+)x(\d+)")


def fixed_aspect(aspect: str) -> tuple[int, int] | None:
    """(height, width) of an ``--aspect`` given as HEIGHTxWIDTH; None for square and data."""
    match = FIXED_ASPECT.fullmatch(aspect)
    return (int(match[1]), int(match[2])) if match else None


#: seeds are drawn into numpy's 32-bit seed space elsewhere, so larger ones would alias
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Bounds:
    """The range a numeric option may take: ``ge`` / ``gt`` below, ``le`` / ``lt`` above (closed /
    open ends; None = unbounded). Lists are checked item by item, ``None`` (unset) is always allowed."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __str__(self) -> str:
        low, high = (self.ge if self.gt is None else self.gt), (self.le if self.lt is None else self.lt)
        return (
            ("[" if self.gt is None and low is not None else "(") + ("-inf" if low is None else _number(low)) + ", "
            + ("inf" if high is None else _number(high)) + ("]" if self.lt is None and high is not None else ")")
        )

    def contains(self, value: float) -> bool:
        return not (
            (self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt)
        )

    def check(self, name: str, value: Any) -> None:
        """ValueError naming the option when ``value`` (or an item of it) lies outside."""
        for item in value if isinstance(value, list) else [value]:
            if item is not None and not self.contains(item):
                raise ValueError(f"{name} must lie in {self}, got {item!r}")


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


#: the option groups of ``--help``, in order, with what each holds; every field names one
GROUPS = {
    "data": "where the images come from and how they are prepared",
    "network": "the fully convolutional net of fcdd / hsc (ae / attention-ae choose theirs with --arch)",
    "objective": "the method: fcdd, hsc, ae, attention-ae or patchcore (see `fcdd list`)",
    "objective: fcdd / hsc": "the anomalies FCDD and HSC train on (methods that fit nominal images alone ignore these)",
    "objective: ae / attention-ae": "the autoencoder baselines: encoder-decoder, reconstruction loss, attention maps",
    "objective: patchcore": "the memory bank of nominal patch features",
    "training": "optimiser, schedule, seed and hardware",
    "evaluation": "heatmaps, image scores, metrics and verdict calibration",
    "output": "the run folder, its report and the experiment trackers that record it",
}


def option(
    default: Any, help: str, choices: tuple | None = None, *, group: str | None = None,
    ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None, **kwargs: Any,
) -> Any:
    """A ``Config`` field: default, help text, allowed ``choices`` or numeric bounds (``ge`` ...),
    and the ``group`` of ``GROUPS`` it is listed under in ``--help``."""
    bounds = Bounds(ge, gt, le, lt) if (ge, gt, le, lt) != (None, None, None, None) else None
    metadata = {"help": help, "choices": choices, "bounds": bounds, "group": group}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


@dataclass
class Config:
    # data
    data: str | None = option(None, "data root: an MVTec-style category folder, a folder of categories, or a reader's directory", group="data")
    dataset: str = option("mvtec", "data layout or reader (see `fcdd list`)", group="data")
    category: str | None = option(None, "category (MVTec/BTAD folder name) or nominal class (index or name) for one-vs-rest sets", group="data")
    image_size: int = option(224, "side of the square network input (with --aspect data its shorter side); images and masks are resized to it", ge=MIN_IMAGE_SIZE, le=4096, group="data")
    aspect: str = option("square", "network input shape: square (image-size x image-size); data: the nominal training images' median height:width ratio kept, image-size on the shorter side and the longer side rounded to a multiple of 32; or HEIGHTxWIDTH, that shape, its shorter side --image-size (what `fcdd evaluate RUN --data DIR` uses, so other data is read at the run's shape). Folder layouts: mvtec, btad, custom, imagenet folders; the readers of square images stay square. Tall or wide parts then keep their resolution along the long side", group="data")
    load_size: int | None = option(None, "decode the nominal training images also at this larger side: each training image is then, half the time each, a random image-size crop or a resize of it (the FCDD paper's MVTec pipeline, 240); evaluation sees images resized to --image-size (none: training images are decoded at --image-size only)", ge=MIN_IMAGE_SIZE, le=4096, group="data")
    channels: int = option(0, "1 grey, 3 colour, 0 decide from the images", ge=0, le=3, group="data")
    augment_flip: str = option("h", "random flips during training (h horizontal, v vertical)", ("none", "h", "v", "hv"), group="data")
    augment_shift: float = option(0.0625, "random translation during training, as a fraction of the image side", ge=0, le=0.5, group="data")
    augment_jitter: float = option(0.1, "random brightness/contrast change during training (0 = off)", ge=0, le=1, group="data")
    standardise_images: bool = option(False, "FCDD / HSC nets: standardise every image to a fixed mean and spread before the net (removes exposure differences between photos)", group="data")
    preprocessing: str = option("channels", "FCDD / HSC nets: how the net normalises its [0, 1] input: per channel (ImageNet statistics for pretrained weights, else the training set's), or lcn_minmax, the paper's local contrast normalisation per image (minus its mean, divided by its mean absolute deviation) then min-max scaling per channel with the minimum and maximum of the normalised training images (stored in the snapshot)", ("channels", "lcn_minmax"), group="data")
    augment_noise: float = option(0.0, "standard deviation of Gaussian pixel noise added during training ([0, 1] units, or a multiple of each image's own standard deviation with --augment-noise-relative)", ge=0, le=1, group="data")
    augment_noise_relative: bool = option(False, "--augment-noise is a multiple of each image's own standard deviation (the paper's MVTec noise: 0.1) instead of a fixed one", group="data")
    augment_noise_p: float = option(1.0, "probability that a training image gets the pixel noise (the paper's MVTec noise: 0.5)", ge=0, le=1, group="data")
    ovr: bool = option(False, "custom layout: one-vs-rest, the nominal class vs all other class folders", group="data")
    preset: str | None = option(None, "apply a data-set preset's settings before the other options", group="data")
    datadir: str | None = option(None, "where downloadable data sets are stored (presets that can download)", group="data")
    download: bool = option(False, "download a torchvision-style data set into --datadir when online", group="data")
    cache_dir: str | None = option(None, "decoded-image cache for sets larger than memory: the decoded, resized images are written once into a memory-mapped file there and reused by later runs (auto: ~/.cache/fcdd; default: decode into memory)", group="data")
    # network
    net: str = option("vgg11", "network (see `fcdd list`)", group="network")
    width: float = option(1.0, "channel width multiplier of the network (1.0 = paper)", gt=0, le=16, group="network")
    pretrained: str = option("auto", "ImageNet weights: 'auto' (find them offline), 'none', or a file path", group="network")
    frozen_bn: str = option("fixed", "batch norms of the frozen pretrained stages: keep their ImageNet statistics (fixed), or normalise by each batch in training and update their running statistics (adapt, as the paper's code, whose frozen layers stay in training mode)", ("fixed", "adapt"), group="network")
    # objective
    objective: str = option("fcdd", "training objective (see `fcdd list`)", group="objective")
    supervise_mode: str = option("malformed_normal", "where the training anomalies come from (see `fcdd list`)", group="objective: fcdd / hsc")
    noise_mode: str = option("confetti", "synthetic anomaly / outlier source (see `fcdd list`)", group="objective: fcdd / hsc")
    noise_mix: list[str] = option(["confetti", "cutpaste_scar"], "noise modes that --noise-mode mix draws from, one per anomalous image (comma separated)", group="objective: fcdd / hsc")
    noise_dir: str | None = option(None, "folder of outlier images for folder-based noise modes", group="objective: fcdd / hsc")
    anomaly_fraction: float = option(0.5, "fraction of each training batch turned into anomalies", ge=0, le=1, group="objective: fcdd / hsc")
    feature_noise: float = option(0.0, "fcdd: also train on feature-space anomalies, the standardised features of each nominal training image plus Gaussian noise of this std, anomalous at every location (0: off; needs a net with standardised features, e.g. efficientnet_lite0_frozen)", ge=0, le=100, group="objective: fcdd / hsc")
    feature_noise_min: float | None = option(None, "fcdd --feature-noise: draw each noisy twin's std uniformly from [this, --feature-noise] (default: always --feature-noise), so the head also meets anomalies near the nominal features", ge=0, le=100, group="objective: fcdd / hsc")
    pixel_loss: str = option("mean", "FCDD with ground-truth maps (semi-supervision, malformed_normal_gt): mean, the paper's per-pixel loss averaged over the whole image, so a defect weighs by its share of the image (a 0.5 % crack barely counts); balanced: the nominal pixels' term averaged over the image plus the anomalous pixels' term averaged over the defect's own area, so a small defect weighs as much as a large one; or defect: a defective image contributes only that defect term (its other pixels are left out: generous masks mark nominal-looking pixels beside a defect, and the nominal images teach what nominal is)", ("mean", "balanced", "defect"), group="objective: fcdd / hsc")
    oe_limit: int | None = option(None, "cap on the number of distinct outlier images (mvtec_gt: real defects per defect type, default 1)", ge=1, group="objective: fcdd / hsc")
    arch: str | None = option(None, "encoder-decoder of ae / attention-ae (see `fcdd list`); default ae (depth by image size) for ae, vae for attention-ae", group="objective: ae / attention-ae")
    loss: str = option("mean", "ae / attention-ae reconstruction loss: mean or sum of the squared errors over pixels", ("mean", "sum"), group="objective: ae / attention-ae")
    ssim: bool = option(False, "ae / attention-ae: add a structural-similarity loss (1 - SSIM, Gaussian window) to the reconstruction loss", group="objective: ae / attention-ae")
    layer: str | None = option(None, "attention-ae: module whose activations give the attention map (see `fcdd layers`); default: the last encoder stage", group="objective: ae / attention-ae")
    attention_activation: str = option("abs", "attention-ae: keep positive evidence (relu, as Grad-CAM) or evidence either way (abs; measured better on the synthetic set)", ("relu", "abs"), group="objective: ae / attention-ae")
    attention_cam: str = option("gradcam", "attention-ae: how the layer's gradients weigh its activations: gradcam (one weight per channel, its spatially averaged gradient; Selvaraju et al.) or hirescam (the gradient times the activation at every location, summed over channels; Draelos & Carin), which keeps a local gradient local", ("gradcam", "hirescam"), group="objective: ae / attention-ae")
    attention_scale: str = option("image", "attention-ae: image: each map is divided by its own maximum (and the layer's gradients by their RMS), so maps compare in shape only and every image, a good one too, has a peak of 1; absolute: neither, so a map keeps the size of the explained scalar's gradient, a nominal image's map stays low and one pixel threshold serves every image", ("image", "absolute"), group="objective: ae / attention-ae")
    attention_difference: bool = option(False, "attention-ae: subtract the mean attention of the nominal training images from each map", group="objective: ae / attention-ae")
    attention_training: bool = option(False, "attention-ae: alternate reconstruction steps with steps that lower the attention of the nominal batch (differentiable Grad-CAM), so that at test time attention rises where an image is not nominal", group="objective: ae / attention-ae")
    attention_weight: float = option(1.0, "attention-ae --attention-training: weight of the attention loss in its steps", gt=0, le=1000, group="objective: ae / attention-ae")
    attention_k: float = option(0.0, "attention-ae --attention-training: the attention loss is the map's mean minus this many standard deviations (0: the mean alone)", ge=0, le=10, group="objective: ae / attention-ae")
    attention_input: str = option("image", "attention-ae: explain the image itself, or the residual (image minus its reconstruction) fed through the net again, weighted by the residual's size so exactly reconstructed pixels get no attention", ("image", "residual"), group="objective: ae / attention-ae")
    attention_target: str = option("auto", "attention-ae: the explained scalar: sum of the latent mean (VAE only), sum of the bottleneck activations, or the reconstruction error (auto: latent_mean for the VAE, else reconstruction_error; reconstruction_error for the feature autoencoders)", ("auto", "latent_mean", "bottleneck", "reconstruction_error"), group="objective: ae / attention-ae")
    # memory bank (patchcore)
    backbone: str = option("efficientnet_lite0", "patchcore: frozen ImageNet backbone of the patch features (efficientnet_lite0, mobilenetv2, vgg11)", group="objective: patchcore")
    feature_layers: list[int] = option([], "patchcore: backbone blocks whose maps form the patch features (default: the backbone's last stride-8 and stride-16 blocks)", ge=0, group="objective: patchcore")
    patch_dim: int | None = option(None, "patchcore: pool the patch features to this many channels (default: keep all)", ge=1, group="objective: patchcore")
    coreset: float = option(0.1, "patchcore: fraction of the nominal patch features kept in the memory bank (greedy k-centre coreset; 1 keeps all)", gt=0, le=1, group="objective: patchcore")
    coreset_projection: int | None = option(32, "patchcore: dimensions of the random projection the coreset selection measures distances in (none: the features' own; 32 chose the same quality as 128 in a tenth of the time on mvtec_bottle_256)", ge=1, group="objective: patchcore")
    knn_backend: str = option("auto", "patchcore: nearest-neighbour search (auto: faiss for large banks when installed, else torch)", ("auto", "torch", "faiss"), group="objective: patchcore")
    patchcore_score: str = option("reweighted", "patchcore: image score, the paper's re-weighted maximum patch distance or the plain maximum", ("reweighted", "max"), group="objective: patchcore")
    neighbourhood: int = option(9, "patchcore: bank neighbours of the nearest feature used to re-weight the image score", ge=1, group="objective: patchcore")
    # training
    epochs: int = option(200, "training epochs", ge=0, group="training")
    batch_size: int = option(16, "training batch size", ge=2, group="training")
    accumulate: int = option(1, "gradient accumulation: the optimiser steps once per this many batches, on their mean loss (the paper's MVTec setting: 8 batches of 16, 128 images a step); an epoch's last, partial group steps too", ge=1, le=4096, group="training")
    epoch_repeats: int = option(1, "each epoch passes over the training set this many times, in one shuffled order (the paper repeats MVTec-AD's small training sets 10 times)", ge=1, le=10000, group="training")
    optimizer: str = option("adam", "optimiser", ("adam", "sgd"), group="training")
    lr: float = option(1e-3, "learning rate", gt=0, le=10, group="training")
    weight_decay: float = option(1e-6, "weight decay", ge=0, le=1, group="training")
    momentum: float = option(0.9, "SGD momentum", gt=0, lt=1, group="training")
    milestones: list[int] = option([], "epochs at which the learning rate is multiplied by lr_gamma (comma separated)", ge=1, group="training")
    lr_gamma: float = option(0.1, "learning-rate factor at each milestone", gt=0, le=1, group="training")
    lr_decay: float | None = option(None, "learning-rate factor after every epoch (exponential decay, the paper's 0.985 on MVTec-AD; composes with --milestones; none: off)", gt=0, le=1, group="training")
    seed: int = option(0, "random seed (data order, augmentation, noise and initialisation)", ge=0, le=MAX_SEED, group="training")
    device: str = option("auto", "torch device: auto, cpu, cuda, cuda:1, ...", group="training")
    devices: int = option(1, "`fcdd train`: train one model in this many processes, data parallel (one per GPU, or CPU processes with --device cpu), started as torchrun does; the result equals one process with the same --batch-size, and a run resumes with any count (under torchrun its --nproc-per-node counts instead)", ge=1, le=1024, group="training")
    threads: int = option(0, "CPU threads for torch (0 = torch's default)", ge=0, le=1024, group="training")
    precision: str = option("auto", "training arithmetic: autocast to bf16 / fp16 or plain fp32; auto = bf16 on CPUs with bf16 instructions and on CUDA GPUs that have it, else fp16 on CUDA, else fp32 (evaluation stays fp32)", ("auto", "fp32", "bf16", "fp16"), group="training")
    channels_last: bool = option(True, "keep images and convolution weights in channels-last memory layout (faster convolutions on CPUs and GPUs; same results)", group="training")
    # heatmaps and evaluation
    upsample: str = option("gaussian", "how output maps become heatmaps", ("gaussian", "bilinear"), group="evaluation")
    gauss_std: float | None = option(None, "std of the Gaussian upsampling kernel (default: the net's own, a quarter of its receptive field for most)", gt=0, group="evaluation")
    image_score: str = option("mean", "FCDD image score: mean of the output map (paper), max of the heatmap, or mean of its top 1 %", ("mean", "max", "top1"), group="evaluation")
    blur_heatmaps: float | None = option(None, "std of a Gaussian blur applied to gradient / reconstruction / patch-distance heatmaps (default: the method's own; 0 for gradient and reconstruction maps, 4 for patchcore)", ge=0, group="evaluation")
    eval_batch_size: int = option(32, "batch size for evaluation and prediction", ge=1, group="evaluation")
    gallery_size: int = option(8, "images per row group in heatmap galleries", ge=1, group="evaluation")
    overlay_alpha: float = option(0.5, "opacity of the heatmap colours laid over images in galleries and report.html", ge=0, le=1, group="evaluation")
    holdout: float = option(0.1, "fraction of nominal training images kept out of training to calibrate the verdict thresholds", ge=0, lt=1, group="evaluation")
    target_fpr: float | None = option(None, "calibrate the verdict threshold at this false-positive rate instead of max F1", ge=0, lt=1, group="evaluation")
    pixel_fpr: float = option(0.001, "calibrate the pixel (defect-mask) threshold so that this fraction of held-out nominal pixels is flagged (0.001 kept good images' masks empty on the most shared sets, benchmarks/thresholds.py)", ge=0, lt=1, group="evaluation")
    eval_resolution: str = option("input", "pixel metrics at the network's input size (anomalib's protocol) or at each mask's own resolution (the FCDD paper's)", ("input", "native"), group="evaluation")
    # output
    out: str | None = option(None, "run folder to write (command line: default a new version folder runs/<dataset>/<category or data folder>/<objective>-<net>/v<N>, with a link `latest` beside it)", group="output")
    resume: bool = option(False, "continue an interrupted run from its last checkpoint (command line without --out: the newest version folder)", group="output")
    report: bool = option(True, "write plots, galleries and report.html after evaluation", group="output")
    loggers: list[str] = option([], "experiment trackers recording the run into its folder, comma separated: tensorboard, mlflow, csv (tensorboard and mlflow need their extras: pip install 'fcdd[tensorboard]')", group="output")

    def __post_init__(self) -> None:
        """Every value to its field's type (the Python API passes anything), then one loop over
        the declared choices and bounds: a bad option fails here, named, not deep inside a run."""
        hints = field_types()
        for f in fields(self):
            value = coerce(hints[f.name], getattr(self, f.name), f.name)
            setattr(self, f.name, value)
            choices, bounds = f.metadata.get("choices"), f.metadata.get("bounds")
            if choices and value not in choices:
                raise ValueError(f"{f.name} must be one of {', '.join(map(str, choices))}, got {value!r}")
            if bounds is not None:
                bounds.check(f.name, value)
        self._check_aspect()
        if self.feature_noise_min is not None and self.feature_noise_min > self.feature_noise:
            raise ValueError(f"feature_noise_min ({self.feature_noise_min}) must not exceed feature_noise ({self.feature_noise})")

    def _check_aspect(self) -> None:
        if self.aspect in ("square", "data"):
            return
        shape = fixed_aspect(self.aspect)
        if shape is None:
            raise ValueError(f"aspect must be square, data or HEIGHTxWIDTH (e.g. 288x224), got {self.aspect!r}")
        if min(shape) != self.image_size or max(shape) > 4096:
            raise ValueError(f"aspect {self.aspect}: its shorter side must be image_size ({self.image_size}) and its longer "
                             f"at most 4096; for this shape set image_size to {min(shape)}")

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
        unknown = sorted(str(k) for k in values if k not in known)  # YAML keys need not be text
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
    """Turn YAML / CLI text into the field's type, with an error naming the option.

    Strict where a silent conversion would change the meaning: no bools as numbers or text, no
    fractional ints, no NaN or infinity, no lists or mappings as scalars.
    """
    kind, optional = base_type(annotation)
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        if optional:
            return None
        raise ValueError(f"{where}: a value is required")
    if kind is list:
        (item,) = typing.get_args(annotation) or (str,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: cannot read {value!r} as a list")
        return [_scalar(item, v, where) for v in value]
    return _scalar(kind, value, where)


def _scalar(kind: type, value: Any, where: str) -> Any:
    """One value as ``kind`` (bool, int, float or str); ValueError naming ``where`` otherwise."""
    bad = ValueError(f"{where}: cannot read {value!r} as {kind.__name__}")
    if kind is bool:
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        if isinstance(value, int) and value in (0, 1):  # bool is an int
            return bool(value)
        raise bad
    if isinstance(value, bool) or not isinstance(value, (str, int, float, os.PathLike)):
        raise bad
    if kind is str:
        return os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if isinstance(value, os.PathLike):
        raise bad
    try:
        number = float(value) if kind is float or isinstance(value, float) else int(value)
        if kind is int and isinstance(number, float):
            if not number.is_integer():
                raise bad
            number = int(number)
    except (TypeError, ValueError, OverflowError):
        raise bad from None
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"{where}: {value!r} is not a finite number")
    return number


_BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
