"""A synthetic MVTec-layout data set: real textures (shipped with scikit-image) with drawn defects.

Nominal images are random crops of a texture photograph; defective ones get a scratch, a blob,
a cut or a colour stain, and the exact pixels changed are written as the ground-truth mask.
It is the default data of ``fcdd demo`` and of the tests, so everything runs offline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fcdd.data.base import DATASETS, DataSplits, category_folders
from fcdd.data.mvtec import MVTecLayout
from fcdd.registry import Registry

if TYPE_CHECKING:
    from fcdd.config import Config

TEXTURES = ("gravel", "grass", "brick")
#: drawn defect types: ``draw(image, image_draw, mask_draw, rng)``; generated in registration order
DEFECTS: Registry[Callable[[Image.Image, ImageDraw.ImageDraw, ImageDraw.ImageDraw, np.random.Generator], None]] = Registry("synthetic defect")


def texture(name: str) -> np.ndarray:
    """A grey texture photograph from scikit-image (no download), as float in [0, 1]."""
    from skimage import data as skdata

    if name not in TEXTURES:
        raise ValueError(f"unknown texture {name!r}; choose one of {', '.join(TEXTURES)}")
    return getattr(skdata, name)().astype(np.float32) / 255.0


def defect(name: str):
    return DEFECTS.register(name)


def _point(rng: np.random.Generator, size: int, margin: float = 0.15) -> tuple[float, float]:
    lo, hi = margin * size, (1 - margin) * size
    return float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))


def _shade(rng: np.random.Generator, image: Image.Image) -> tuple[int, ...]:
    """A colour far from the image's mean, so the defect is visible."""
    mean = np.asarray(image, dtype=np.float32).reshape(-1, 3).mean(0)
    return tuple(int(v) for v in np.where(mean > 127, rng.uniform(0, 60, 3), rng.uniform(195, 255, 3)))


@defect("scratch")
def _scratch(image, draw, mask, rng):
    size = image.size[0]
    x, y = _point(rng, size)
    angle = rng.uniform(0, math.pi)
    points = [(x, y)]
    for _ in range(3):
        angle += rng.normal(0, 0.3)
        step = rng.uniform(0.08, 0.15) * size
        x, y = x + step * math.cos(angle), y + step * math.sin(angle)
        points.append((x, y))
    width = max(2, int(size / 48))
    colour = _shade(rng, image)
    draw.line(points, fill=colour, width=width, joint="curve")
    mask.line(points, fill=255, width=width, joint="curve")


@defect("blob")
def _blob(image, draw, mask, rng):
    size = image.size[0]
    x, y = _point(rng, size, 0.2)
    rx, ry = rng.uniform(0.05, 0.12, 2) * size
    box = [x - rx, y - ry, x + rx, y + ry]
    draw.ellipse(box, fill=_shade(rng, image))
    mask.ellipse(box, fill=255)


@defect("cut")
def _cut(image, draw, mask, rng):
    size = image.size[0]
    x, y = _point(rng, size, 0.2)
    length, thick = rng.uniform(0.2, 0.35) * size, rng.uniform(0.03, 0.06) * size
    angle = rng.uniform(0, math.pi)
    dx, dy = math.cos(angle), math.sin(angle)
    nx, ny = -dy * thick / 2, dx * thick / 2
    poly = [(x + nx, y + ny), (x + dx * length + nx / 3, y + dy * length + ny / 3),
            (x + dx * length - nx / 3, y + dy * length - ny / 3), (x - nx, y - ny)]
    draw.polygon(poly, fill=(0, 0, 0))
    mask.polygon(poly, fill=255)


@defect("stain")
def _stain(image, draw, mask, rng):
    size = image.size[0]
    x, y = _point(rng, size, 0.2)
    r = rng.uniform(0.08, 0.15) * size
    box = [x - r, y - r * rng.uniform(0.6, 1.0), x + r, y + r * rng.uniform(0.6, 1.0)]
    stain_mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(stain_mask).ellipse(box, fill=255)
    tint = Image.new("RGB", image.size, tuple(int(c) for c in rng.choice([(200, 40, 30), (40, 160, 40), (30, 60, 200)])))
    blended = Image.blend(image, tint, 0.55)
    image.paste(blended, (0, 0), stain_mask)
    mask.ellipse(box, fill=255)


def _camera(image: Image.Image) -> Image.Image:
    """The same slight softening for every image, nominal or not (so blur alone tells nothing);
    it rounds drawn defect edges as a lens would, while masks keep the drawn pixels."""
    return image.filter(ImageFilter.GaussianBlur(0.6))


def _crop(source: np.ndarray, rng: np.random.Generator, size: int, tint: np.ndarray) -> Image.Image:
    h, w = source.shape
    crop_side = int(min(h, w) * 0.5)
    top, left = rng.integers(0, h - crop_side + 1), rng.integers(0, w - crop_side + 1)
    patch = source[top : top + crop_side, left : left + crop_side]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    rgb = np.clip(patch[..., None] * tint[None, None], 0, 1)
    return Image.fromarray((rgb * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)


def generate(
    out: str | Path,
    category: str = "gravel",
    size: int = 128,
    n_train: int = 200,
    n_test_good: int = 40,
    n_test_per_defect: int = 15,
    seed: int = 0,
) -> Path:
    """Write ``out/<category>`` in MVTec layout; returns the category folder. Idempotent per seed."""
    root = Path(out) / category
    marker = root / ".complete"
    signature = f"v2 {category} {size} {n_train} {n_test_good} {n_test_per_defect} {seed}"
    if marker.is_file() and marker.read_text() == signature:
        return root
    rng = np.random.default_rng(seed)
    source = texture(category)
    tint = np.array([1.0, 0.85, 0.7], np.float32)  # a warm colour so colour stains matter
    (root / "train" / "good").mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        _camera(_crop(source, rng, size, tint)).save(root / "train" / "good" / f"{i:03d}.png")
    (root / "test" / "good").mkdir(parents=True, exist_ok=True)
    for i in range(n_test_good):
        _camera(_crop(source, rng, size, tint)).save(root / "test" / "good" / f"{i:03d}.png")
    for name, draw_fn in DEFECTS.items():
        (root / "test" / name).mkdir(parents=True, exist_ok=True)
        (root / "ground_truth" / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_test_per_defect):
            image = _crop(source, rng, size, tint)
            mask = Image.new("L", image.size, 0)
            draw_fn(image, ImageDraw.Draw(image), ImageDraw.Draw(mask), rng)
            image = _camera(image)
            image.save(root / "test" / name / f"{i:03d}.png")
            mask.save(root / "ground_truth" / name / f"{i:03d}_mask.png")
    marker.write_text(signature)
    return root


def default_location() -> Path:
    return Path.home() / ".cache" / "fcdd" / "synthetic"


@DATASETS.register("synthetic", classes=category_folders)
def synthetic(config: Config) -> DataSplits:
    """Generated on first use (into ``--data`` or the user cache) and then read as MVTec layout."""
    category = config.category or TEXTURES[0]
    root = generate(config.data or default_location(), category=category, seed=0)
    train, test = MVTecLayout(root).load(config.image_size, config.channels, load_size=config.load_size)
    return DataSplits(train, test, name=f"synthetic-{category}")
