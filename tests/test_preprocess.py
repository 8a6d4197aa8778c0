"""Reference preprocessing against hand-computed cases and an independent NumPy oracle.

The oracle shares only OpenCV's JPEG decoder and INTER_AREA resize with the code under test;
target size, crop offsets, channel order, mean subtraction and layout are recomputed here with
integer arithmetic, so a slip in any of them shows up as an inequality.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from fastres.data.preprocess import (
    FORMATS,
    convert,
    decode_image,
    format_spec,
    preprocess_bgr,
    preprocess_image,
    resize_short_side,
)
from fastres.errors import DataError, InvalidArgument

MEANS_RGB = (123.68, 116.78, 103.94)


def write_jpeg(path: Path, img: np.ndarray, quality: int = 92) -> Path:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    buf.tofile(str(path))
    return path


def random_image(rng: np.random.Generator, h: int, w: int, channels: int = 3) -> np.ndarray:
    # Smooth noise: JPEG keeps it close to the source, so the test images look like photos
    # rather than white noise, which stresses resize and crop the same way.
    shape = (h, w, channels) if channels > 1 else (h, w)
    img = rng.integers(0, 256, size=shape, dtype=np.uint8)
    return cv2.GaussianBlur(img, (5, 5), 1.5)


def oracle(path: Path) -> np.ndarray:
    """The MLPerf reference steps, recomputed independently (see the module docstring)."""
    bgr = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_COLOR)
    h, w = bgr.shape[:2]
    # Short side to 256 = 224 / 0.875; the long side floored, in exact integer arithmetic.
    if h > w:
        new_w, new_h = 256, (256 * h) // w
    else:
        new_w, new_h = (256 * w) // h, 256
    # Resize in BGR and swap afterwards: INTER_AREA treats channels independently, so the
    # order of the two steps must not matter.
    resized = cv2.resize(bgr, (new_w, new_h), interpolation=cv2.INTER_AREA)
    top, left = (new_h - 224) // 2, (new_w - 224) // 2
    crop = resized[top:top + 224, left:left + 224]
    out = np.empty((3, 224, 224), dtype=np.float32)
    for c_rgb, c_bgr in ((0, 2), (1, 1), (2, 0)):
        # float64 then one rounding to float32 equals float32 subtraction of integers.
        mean = float(np.float32(MEANS_RGB[c_rgb]))
        out[c_rgb] = (crop[:, :, c_bgr].astype(np.float64) - mean).astype(np.float32)
    return out


# --------------------------------------------------------------------------- hand-computed

def positional_bgr(h: int, w: int) -> np.ndarray:
    """Pixel values that encode their own position, so crops can be read off by hand."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([y % 256, x % 256, (7 * y + 3 * x) % 256], axis=-1).astype(np.uint8)


def test_square_256_is_only_cropped_by_16():
    img = positional_bgr(256, 256)
    out = preprocess_bgr(img)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    assert out.flags.c_contiguous
    # R comes from BGR channel 2, B from channel 0; the crop starts at (16, 16).
    assert out[0, 0, 0] == np.float32((7 * 16 + 3 * 16) % 256) - np.float32(123.68)
    assert out[1, 0, 0] == np.float32(16) - np.float32(116.78)
    assert out[2, 0, 0] == np.float32(16) - np.float32(103.94)
    assert out[2, 10, 5] == np.float32(26) - np.float32(103.94)   # B = y = 10 + 16
    assert out[1, 10, 5] == np.float32(21) - np.float32(116.78)   # G = x = 5 + 16
    assert out[2, 223, 0] == np.float32(239) - np.float32(103.94)


@pytest.mark.parametrize("h, w, top, left", [
    (256, 512, 16, 144),   # landscape: short side already 256, crop offsets (16, 144)
    (512, 256, 144, 16),   # portrait
    (256, 257, 16, 16),    # odd margin: int((257 - 224) / 2) = 16
])
def test_crop_offsets_without_resize(h, w, top, left):
    img = positional_bgr(h, w)
    out = preprocess_bgr(img)
    assert out[2, 0, 0] == np.float32(top % 256) - np.float32(103.94)
    assert out[1, 0, 0] == np.float32(left % 256) - np.float32(116.78)
    assert out[2, 223, 223] == np.float32((top + 223) % 256) - np.float32(103.94)
    assert out[1, 223, 223] == np.float32((left + 223) % 256) - np.float32(116.78)


def test_uniform_colour_gives_colour_minus_mean():
    img = np.empty((300, 400, 3), dtype=np.uint8)
    img[:] = (10, 200, 250)  # BGR
    out = preprocess_bgr(img)
    np.testing.assert_array_equal(out[0], np.float32(250) - np.float32(123.68))
    np.testing.assert_array_equal(out[1], np.float32(200) - np.float32(116.78))
    np.testing.assert_array_equal(out[2], np.float32(10) - np.float32(103.94))


@pytest.mark.parametrize("h, w, expected", [
    (375, 500, (256, 341)),    # landscape: 256 * 500 / 375 = 341.33 -> 341
    (500, 375, (341, 256)),    # portrait
    (300, 300, (256, 256)),    # square
    (100, 1000, (256, 2560)),  # extreme aspect
    (1000, 333, (768, 256)),   # 256 * 1000 / 333 = 768.77 -> 768
    (50, 60, (256, 307)),      # upscaling: 256 * 60 / 50 = 307.2 -> 307
])
def test_short_side_256_rule(h, w, expected):
    img = np.zeros((h, w, 3), dtype=np.uint8)
    assert resize_short_side(img).shape[:2] == expected
    assert preprocess_bgr(img).shape == (3, 224, 224)


def test_preprocess_bgr_rejects_non_bgr_input():
    with pytest.raises(InvalidArgument, match=r"\[H, W, 3\]"):
        preprocess_bgr(np.zeros((10, 10), dtype=np.uint8))


# --------------------------------------------------------------------------- vs the oracle

@pytest.mark.parametrize("h, w", [(375, 500), (500, 375), (256, 256), (333, 333), (240, 961),
                                  (719, 230), (64, 80), (375, 499)])
def test_matches_independent_oracle(tmp_path, h, w):
    rng = np.random.default_rng(h * 1000 + w)
    path = write_jpeg(tmp_path / f"img_{h}x{w}.JPEG", random_image(rng, h, w))
    np.testing.assert_array_equal(preprocess_image(path), oracle(path))


def test_grayscale_jpeg_is_replicated_to_three_channels(tmp_path):
    rng = np.random.default_rng(1)
    path = write_jpeg(tmp_path / "gray.JPEG", random_image(rng, 300, 420, channels=1))
    assert cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED).ndim == 2
    out = preprocess_image(path)
    means = np.array(MEANS_RGB, dtype=np.float32)[:, None, None]
    restored = out + means
    np.testing.assert_array_equal(restored[0], restored[1])
    np.testing.assert_array_equal(restored[1], restored[2])
    np.testing.assert_array_equal(out, oracle(path))


def test_cmyk_jpeg_decodes_like_opencv(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    cmyk = Image.new("CMYK", (400, 300), (0, 255, 255, 0))  # pure red
    buf = io.BytesIO()
    cmyk.save(buf, "JPEG", quality=95)
    path = tmp_path / "cmyk.JPEG"
    path.write_bytes(buf.getvalue())
    bgr = decode_image(path)
    assert bgr.shape == (300, 400, 3)
    b, g, r = (int(v) for v in bgr[150, 200])
    assert r > 240 and g < 15 and b < 15, "CMYK red must decode to red"
    out = preprocess_image(path)
    np.testing.assert_array_equal(out, oracle(path))
    assert out[0].mean() > out[1].mean() + 100  # red channel first


# --------------------------------------------------------------------------- bad files

def test_corrupt_jpeg_is_a_data_error_naming_the_file(tmp_path):
    path = tmp_path / "ILSVRC2012_val_00000042.JPEG"
    path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    with pytest.raises(DataError, match="ILSVRC2012_val_00000042.JPEG.*not a decodable"):
        preprocess_image(path)


def test_zero_byte_file_is_a_data_error_naming_the_file(tmp_path):
    path = tmp_path / "empty.JPEG"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.JPEG.*empty \(0 bytes\)"):
        preprocess_image(path)


def test_missing_file_is_a_data_error_naming_the_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.JPEG: image not found"):
        preprocess_image(tmp_path / "nope.JPEG")


# --------------------------------------------------------------------------- formats

def test_format_specs():
    assert format_spec("fp32") == (np.dtype(np.float32), (3, 224, 224))
    assert format_spec("int8_linear") == (np.dtype(np.int8), (3, 224, 224))
    assert format_spec("int8_chw4") == (np.dtype(np.int8), (1, 224, 224, 4))
    with pytest.raises(InvalidArgument, match="fp16.*fp32, int8_linear, int8_chw4"):
        format_spec("fp16")
    with pytest.raises(InvalidArgument):
        convert(np.zeros((3, 224, 224), np.float32), "fp16")


def test_int8_linear_clips_then_truncates_toward_zero():
    values = np.array([127.9, -128.5, -0.7, 3.9, 0.0, -1.0, -1.5, 126.99, 300.0, -1e6, 0.49,
                       -127.2], dtype=np.float32)
    expected = np.array([127, -128, 0, 3, 0, -1, -1, 126, 127, -128, 0, -127], dtype=np.int8)
    chw = np.zeros((3, 224, 224), dtype=np.float32)
    chw[1, 7, :values.size] = values
    q = convert(chw, "int8_linear")
    assert q.dtype == np.int8 and q.shape == (3, 224, 224)
    np.testing.assert_array_equal(q[1, 7, :values.size], expected)
    assert not q[0].any() and not q[2].any()


def test_int8_chw4_layout():
    rng = np.random.default_rng(3)
    chw = rng.uniform(-200, 200, size=(3, 224, 224)).astype(np.float32)
    q = convert(chw, "int8_chw4")
    lin = convert(chw, "int8_linear")
    assert q.dtype == np.int8 and q.shape == (1, 224, 224, 4) and q.flags.c_contiguous
    assert not q[0, :, :, 3].any(), "the padding channel must be zero"
    for c, h, w in [(0, 0, 0), (1, 5, 9), (2, 223, 223), (0, 100, 7), (2, 0, 223)]:
        assert q[0, h, w, c] == lin[c, h, w]
    np.testing.assert_array_equal(q[0, :, :, :3], lin.transpose(1, 2, 0))
    # Memory order: the four channels of one pixel are adjacent bytes.
    flat = q.reshape(-1)
    assert flat[(5 * 224 + 9) * 4 + 1] == lin[1, 5, 9]


@pytest.mark.parametrize("fmt", FORMATS)
def test_preprocess_image_formats_agree_with_convert(tmp_path, fmt):
    rng = np.random.default_rng(4)
    path = write_jpeg(tmp_path / "a.JPEG", random_image(rng, 311, 467))
    out = preprocess_image(path, fmt)
    dtype, shape = format_spec(fmt)
    assert out.dtype == dtype and out.shape == shape
    np.testing.assert_array_equal(out, convert(oracle(path), fmt))
