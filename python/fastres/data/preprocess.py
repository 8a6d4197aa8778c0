"""Reference preprocessing: what the MLPerf reference harness's ``pre_process_vgg`` does to
one image, and the three tensor formats of the NVIDIA harness.

Steps (mlcommons/inference ``vision/classification_and_detection/python/dataset.py``): OpenCV
decode (``cv2.imread``, 3-channel BGR: grayscale is replicated, CMYK converted by OpenCV),
BGR→RGB, resize so the short side is 256 (224 / 0.875) with ``INTER_AREA`` keeping the aspect
ratio (the long side truncated to an int), center crop 224×224, float32, subtract the
per-channel means, no division by a standard deviation, HWC→CHW.

Formats:

- ``fp32``: float32 [3, 224, 224] (NCHW per batch).
- ``int8_linear``: the fp32 values clipped to [-128, 127] and cast to int8 (truncating toward
  zero, as NumPy's ``astype`` does in NVIDIA's preprocessing), [3, 224, 224].
- ``int8_chw4``: ``int8_linear`` with the channels padded to 4 and moved innermost — TensorRT's
  CHW4 vector format, NC/HW4 — [1, 224, 224, 4].
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError, InvalidArgument

#: Bumped whenever the output of :func:`preprocess_image` changes; part of every store's cache key.
PREPROCESS_VERSION = 1

IMAGE_SIZE = 224
#: MLPerf's resize target: 100 * 224 / 87.5 = 256.
RESIZE_SHORT_SIDE = int(100.0 * IMAGE_SIZE / 87.5)
MEANS_RGB = np.array([123.68, 116.78, 103.94], dtype=np.float32)

FORMATS = ("fp32", "int8_linear", "int8_chw4")


def format_spec(fmt: str) -> tuple[np.dtype, tuple[int, ...]]:
    """The per-sample dtype and shape of a preprocessed format."""
    if fmt == "fp32":
        return np.dtype(np.float32), (3, IMAGE_SIZE, IMAGE_SIZE)
    if fmt == "int8_linear":
        return np.dtype(np.int8), (3, IMAGE_SIZE, IMAGE_SIZE)
    if fmt == "int8_chw4":
        return np.dtype(np.int8), (1, IMAGE_SIZE, IMAGE_SIZE, 4)
    raise InvalidArgument(f"unknown data format {fmt!r}: choose one of {', '.join(FORMATS)}")


def decode_image(path: str | Path) -> np.ndarray:
    """Decode a JPEG (or anything OpenCV reads) as the reference does: 3-channel BGR uint8.

    Raises :class:`DataError` naming the file when it is missing, empty or not decodable.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: image not found; check --dataset-path and val_map.txt "
                        "(or pass --skip-missing to skip missing images)") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read image: {exc}") from None
    if data.size == 0:
        raise DataError(f"{path}: image file is empty (0 bytes); replace or remove it")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{path}: not a decodable image (corrupt or truncated JPEG?); "
                        "replace the file or remove it from val_map.txt")
    return img


def resize_short_side(img: np.ndarray, short: int = RESIZE_SHORT_SIDE,
                      interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Resize so the short side is ``short``; the long side is ``int(short * long / short_in)``."""
    h, w = img.shape[:2]
    if h > w:
        new_w, new_h = short, int(short * h / w)
    else:
        new_h, new_w = short, int(short * w / h)
    return cv2.resize(img, (new_w, new_h), interpolation=interpolation)


def center_crop(img: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    h, w = img.shape[:2]
    top = int((h - size) / 2)
    left = int((w - size) / 2)
    return img[top:top + size, left:left + size]


def preprocess_bgr(img_bgr: np.ndarray) -> np.ndarray:
    """Reference preprocessing of a decoded BGR uint8 image: float32 CHW, mean-subtracted."""
    if img_bgr.ndim != 3 or img_bgr.shape[2] != 3:
        raise InvalidArgument(f"expected a decoded BGR image [H, W, 3], got shape {img_bgr.shape}")
    rgb = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2RGB)
    rgb = center_crop(resize_short_side(rgb))
    out = rgb.astype(np.float32)
    out -= MEANS_RGB
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def to_int8_linear(chw: np.ndarray) -> np.ndarray:
    """fp32 CHW (mean-subtracted) → int8: clip to [-128, 127], cast (truncation toward zero)."""
    return np.clip(chw, -128.0, 127.0).astype(np.int8)


def to_int8_chw4(chw: np.ndarray) -> np.ndarray:
    """fp32 or int8 [C, H, W] → int8 NC/HW4 [ceil(C/4), H, W, 4], zero-padded channels."""
    q = chw if chw.dtype == np.int8 else to_int8_linear(chw)
    c, h, w = q.shape
    groups = (c + 3) // 4
    padded = np.zeros((groups * 4, h, w), dtype=np.int8)
    padded[:c] = q
    return np.ascontiguousarray(padded.reshape(groups, 4, h, w).transpose(0, 2, 3, 1))


def convert(chw_fp32: np.ndarray, fmt: str) -> np.ndarray:
    """Convert a reference fp32 CHW tensor into ``fmt``."""
    if fmt == "fp32":
        return chw_fp32
    if fmt == "int8_linear":
        return to_int8_linear(chw_fp32)
    if fmt == "int8_chw4":
        return to_int8_chw4(chw_fp32)
    format_spec(fmt)  # raises with the list of formats
    raise AssertionError("unreachable")


def preprocess_image(path: str | Path, fmt: str = "fp32") -> np.ndarray:
    """Decode and preprocess one image file into ``fmt`` exactly as the reference harness does."""
    return convert(preprocess_bgr(decode_image(path)), fmt)
