"""Property-based tests (Hypothesis) of the three places hostile input reaches first: the option
parser, the metric functions and the image decoder. Each either gives its documented result or
its documented error, never another exception."""

from __future__ import annotations

import dataclasses
import io
import math
import typing
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fcdd.config import Config, base_type, coerce, field_types
from fcdd.data.base import DataError, read_image
from fcdd.metrics import aupro, auroc, average_precision, f1_max

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NAMES = [f.name for f in dataclasses.fields(Config)]
FIELDS = {f.name: f for f in dataclasses.fields(Config)}

# --- the option parser -------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["none", "", "3", "0.5", "-1", "1e400", "nan", "yes", "off", "1,2", "adam", "h"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=3), scalars, max_size=2))


def well_typed(name: str, value: typing.Any) -> bool:
    """Whether a parsed value has its field's type (lists item by item)."""
    annotation = field_types()[name]
    kind, optional = base_type(annotation)
    if value is None:
        return optional
    if kind is list:
        item = (typing.get_args(annotation) or (str,))[0]
        return isinstance(value, list) and all(type(v) is item for v in value)
    return type(value) is kind


def assert_valid(config: Config) -> None:
    for name in NAMES:
        value = getattr(config, name)
        assert well_typed(name, value), (name, value)
        if isinstance(value, float):
            assert math.isfinite(value), name
        choices, bounds = FIELDS[name].metadata.get("choices"), FIELDS[name].metadata.get("bounds")
        assert not choices or value in choices, name
        for item in value if isinstance(value, list) else [value]:
            assert bounds is None or item is None or bounds.contains(item), (name, item)


@FAST
@given(st.dictionaries(st.sampled_from(NAMES), values, min_size=1, max_size=3))
def test_from_dict_gives_a_valid_config_or_a_value_error_naming_an_option(given_values):
    try:
        config = Config.from_dict(given_values)
    except ValueError as err:
        assert any(name in str(err) for name in given_values), str(err)
    else:
        assert_valid(config)


@FAST
@given(st.sampled_from(NAMES), values)
def test_the_python_api_checks_as_the_parser_does(name, value):
    try:
        config = Config(**{name: value})
    except ValueError as err:
        assert name in str(err)
    else:
        assert_valid(config)


@FAST
@given(st.sampled_from(NAMES), values)
def test_coerce_gives_the_fields_type_or_a_value_error_naming_it(name, value):
    try:
        parsed = coerce(field_types()[name], value, f"--{name}")
    except ValueError as err:
        assert f"--{name}" in str(err)
    else:
        assert well_typed(name, parsed), (name, value, parsed)


@FAST
@given(st.dictionaries(st.integers() | st.text(max_size=4), st.integers(), min_size=1, max_size=3))
def test_unknown_keys_of_any_type_are_named(given_values):
    given_values = {k: v for k, v in given_values.items() if k not in FIELDS} or {7: 1}
    with pytest.raises(ValueError, match="unknown option"):
        Config.from_dict(given_values)


# --- the metrics -------------------------------------------------------------------------------

#: few distinct values, so ties are common; extremes included
pool = st.sampled_from([0.0, -0.0, 1.0, 0.5, -1.0, 1e-300, 5e-324, 1e300, -1e300, 3.0])
score = st.one_of(pool, st.floats(-1e6, 1e6, allow_nan=False))


@st.composite
def scored(draw, min_size: int = 0):
    n = draw(st.integers(min_size, 30))
    scores = draw(st.lists(score, min_size=n, max_size=n))
    if draw(st.booleans()):
        scores = [scores[0]] * n if n else scores  # constant scores
    labels = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return np.array(scores, dtype=np.float64), np.array(labels, dtype=bool)


def one_class(labels: np.ndarray) -> bool:
    return labels.all() or not labels.any()


@FAST
@given(scored())
def test_auroc_lies_in_0_1_is_symmetric_and_nan_for_one_class(data):
    scores, labels = data
    value = auroc(scores, labels)
    if one_class(labels):
        assert math.isnan(value)
        return
    assert 0.0 <= value <= 1.0
    assert value + auroc(scores, ~labels) == pytest.approx(1.0)
    if np.unique(scores).size == 1:
        assert value == 0.5


@FAST
@given(scored())
def test_average_precision_lies_in_0_1_and_is_nan_without_positives(data):
    scores, labels = data
    value = average_precision(scores, labels)
    if not labels.any():
        assert math.isnan(value)
        return
    assert 0.0 <= value <= 1.0 + 1e-12
    if labels.all():
        assert value == pytest.approx(1.0)


@FAST
@given(scored())
def test_f1_max_lies_in_0_1_at_a_threshold_among_the_scores(data):
    scores, labels = data
    best, threshold = f1_max(scores, labels)
    if not labels.any():
        assert math.isnan(best) and math.isnan(threshold)
        return
    assert 0.0 < best <= 1.0 and threshold in scores
    predicted = scores >= threshold
    tp = int((predicted & labels).sum())
    assert best == pytest.approx(2 * tp / (predicted.sum() + labels.sum()))


@FAST
@given(scored(min_size=1), st.integers(1, 5))
def test_f1_max_and_average_precision_refuse_nan_and_mismatched_lengths(data, extra):
    scores, labels = data
    for metric in (f1_max, average_precision):
        with pytest.raises(ValueError):
            metric(np.append(scores, [0.0] * extra), labels)
        with pytest.raises(ValueError, match="NaN"):
            metric(np.where(np.arange(len(scores)) == 0, np.nan, scores), labels)


@st.composite
def maps(draw):
    n, h, w = draw(st.integers(0, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    size = n * h * w
    heat = draw(st.lists(score, min_size=size, max_size=size))
    if draw(st.booleans()) and size:
        heat = [heat[0]] * size
    masks = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    return np.array(heat, dtype=np.float64).reshape(n, h, w), np.array(masks, dtype=bool).reshape(n, h, w)


@FAST
@given(maps())
def test_aupro_lies_in_0_1_and_is_nan_without_regions_or_nominal_pixels(data):
    heat, masks = data
    value = aupro(heat, masks, thresholds=50)
    if not masks.any() or masks.all():
        assert math.isnan(value)
        return
    assert 0.0 <= value <= 1.0 + 1e-9
    if np.unique(heat).size == 1:
        assert value == pytest.approx(0.15)  # a constant map: the diagonal, max_fpr / 2


def test_auroc_refuses_mismatched_lengths():
    with pytest.raises(ValueError):
        auroc([0.1, 0.2, 0.3], [0, 1])


def test_auroc_refuses_nan_scores():
    try:
        value = auroc([np.nan, 1.0, 2.0], [0, 1, 1])
    except ValueError:
        return
    assert math.isnan(value)


# --- the image decoder -------------------------------------------------------------------------

MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"BM", b"II*\x00", b"MM\x00*", b"P5\n4 4\n255\n", b"RIFF\x00\x00\x00\x00WEBP", b"GIF89a"]
#: the format each mode is written in (PNG where it can hold the mode, else TIFF)
MODES = {"1": "PNG", "L": "PNG", "LA": "PNG", "P": "PNG", "RGB": "PNG", "RGBA": "PNG", "I;16": "PNG",
         "I": "TIFF", "F": "TIFF", "CMYK": "TIFF", "I;16B": "TIFF", "YCbCr": "TIFF"}


def decodes(path: Path, channels: int, size: int) -> np.ndarray | None:
    """The decoded array after checking its documented shape, or None for the documented DataError."""
    try:
        arr = read_image(path, channels, size)
    except DataError as err:
        assert str(path) in str(err)
        return None
    assert arr.shape == (1 if channels == 1 else 3, size, size) and arr.dtype == np.uint8
    return arr


@FAST
@given(st.sampled_from(MAGIC), st.binary(max_size=300), st.sampled_from([".png", ".jpg", ".tif", ".bmp"]),
       st.sampled_from([1, 3]), st.integers(1, 9))
def test_arbitrary_bytes_decode_or_raise_a_data_error_naming_the_file(tmp_path, magic, body, suffix, channels, size):
    path = tmp_path / f"x{suffix}"
    path.write_bytes(magic + body)
    decodes(path, channels, size)


@st.composite
def tiny_images(draw) -> Image.Image:
    mode = draw(st.sampled_from(sorted(MODES)))
    w, h = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    if mode == "F":
        pixels = draw(st.lists(st.floats(-2, 2, width=32), min_size=w * h, max_size=w * h))
        return Image.fromarray(np.array(pixels, np.float32).reshape(h, w), "F")
    if mode in ("I", "I;16", "I;16B"):
        top = 2**31 - 1 if mode == "I" else 2**16 - 1
        pixels = draw(st.lists(st.integers(0, top), min_size=w * h, max_size=w * h))
        arr = np.array(pixels, np.int64).reshape(h, w)
        image = Image.fromarray(arr.astype(np.int32 if mode == "I" else np.uint16))
        return image if mode != "I;16B" else image.convert("I").convert("I;16B")
    bands = len(Image.new(mode, (1, 1)).getbands())
    data = draw(st.binary(min_size=w * h * bands, max_size=w * h * bands))
    return Image.frombytes(mode, (w, h), data) if mode != "1" else Image.frombytes("L", (w, h), data[: w * h]).convert("1")


@FAST
@given(tiny_images(), st.sampled_from([1, 3]), st.integers(1, 9), st.integers(0, 40))
def test_tiny_images_of_any_mode_decode_to_uint8_of_the_asked_shape(tmp_path, image, channels, size, cut):
    path = tmp_path / f"x.{MODES[image.mode].lower()}"
    buffer = io.BytesIO()
    image.save(buffer, format=MODES[image.mode])
    data = buffer.getvalue()
    path.write_bytes(data)
    assert decodes(path, channels, size) is not None, image.mode  # a file as written decodes
    path.write_bytes(data[: max(1, len(data) - cut)] if cut else data)  # truncated: decodes or DataError
    decodes(path, channels, size)


@FAST
@given(st.integers(0, 65535), st.integers(1, 8))
def test_a_16_bit_grey_value_decodes_to_its_share_of_65535(tmp_path, value, size):
    path = tmp_path / "x.png"
    Image.fromarray(np.full((5, 7), value, np.uint16)).save(path)
    arr = read_image(path, 1, size)
    assert np.all(np.abs(arr.astype(int) - round(value * 255 / 65535)) <= 1)


@FAST
@given(st.floats(-1.0, 2.0, width=32), st.integers(1, 8))
def test_a_float_grey_value_decodes_as_a_fraction_of_white(tmp_path, value, size):
    path = tmp_path / "x.tif"
    Image.fromarray(np.full((5, 7), value, np.float32), "F").save(path)
    arr = read_image(path, 1, size)
    assert np.all(np.abs(arr.astype(int) - round(min(max(value, 0.0), 1.0) * 255)) <= 1)
