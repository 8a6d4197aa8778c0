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


#: The most pixels an image may have (width x height, before or after the resize to a short
#: side of 256): Pillow's decompression-bomb limit. A 24-megapixel camera photo is a quarter
#: of it; ImageNet's largest validation images are far below. Above it decoding would take
#: gigabytes (and the reference harness would run out of memory); the limit can be moved with
#: the environment variable ``FASTRES_MAX_IMAGE_PIXELS``.
MAX_IMAGE_PIXELS = 89_478_485
_BAD_FIX = "replace the file or remove it from val_map.txt (or pass --skip-bad to leave bad " \
    "images out)"

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def max_image_pixels() -> int:
    """:data:`MAX_IMAGE_PIXELS`, or ``$FASTRES_MAX_IMAGE_PIXELS`` when set."""
    import os

    text = os.environ.get("FASTRES_MAX_IMAGE_PIXELS")
    if not text:
        return MAX_IMAGE_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidArgument(f"FASTRES_MAX_IMAGE_PIXELS={text!r}: expected a positive "
                              "integer (pixels, width x height)")
    return value


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None when the markers before it do not
    parse (OpenCV then has the last word)."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before
            return None
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            if i + 9 > n:
                return None
            height = (data[i + 5] << 8) | data[i + 6]
            width = (data[i + 7] << 8) | data[i + 8]
            return (width, height) if width and height else None
        i += 2 + length
    return None


def _header_problem(path: Path, data: bytes) -> str | None:
    """What the file's header already shows to be wrong (truncated, too large), or None."""
    size: tuple[int, int] | None = None
    if data[:3] == b"\xff\xd8\xff":
        # Entropy-coded data never holds FF DA or FF D9 (an FF there is stuffed as FF 00), so a
        # complete file has an end-of-image marker after its last start-of-scan.
        last_scan = data.rfind(b"\xff\xda")
        if last_scan != -1 and data.rfind(b"\xff\xd9") < last_scan:
            return (f"{path}: truncated JPEG ({len(data)} bytes, no end-of-image marker after "
                    f"its last scan); {_BAD_FIX}")
        size = _jpeg_size(data)
    elif data[:8] == _PNG_SIGNATURE:
        if b"IEND" not in data[-12:]:
            return f"{path}: truncated PNG ({len(data)} bytes, no IEND chunk); {_BAD_FIX}"
        if len(data) >= 24 and data[12:16] == b"IHDR":
            size = (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))
    if size is not None:
        limit = max_image_pixels()
        if size[0] * size[1] > limit:
            return (f"{path}: {size[0]} x {size[1]} pixels is more than fastres decodes "
                    f"({limit:,} pixels; decoding it would take "
                    f"{3 * size[0] * size[1] / 2**30:,.1f} GiB); downscale the file, or raise "
                    f"FASTRES_MAX_IMAGE_PIXELS if this machine has the memory")
    return None


def decode_image(path: str | Path) -> np.ndarray:
    """Decode a JPEG (or anything OpenCV reads) as the reference does: 3-channel BGR uint8
    (``cv2.imread``'s default flag): grayscale replicated, CMYK converted by OpenCV, a PNG
    decoded as PNG whatever its name, an alpha channel dropped.

    Raises :class:`DataError` naming the file when it is missing, empty, truncated, larger than
    :func:`max_image_pixels` or not decodable. (The reference harness would stop with an
    OpenCV error on the ``None`` that ``cv2.imread`` returns, or run out of memory.)
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: image not found; check --dataset-path and val_map.txt "
                        "(or pass --skip-missing to skip missing images)") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image; fix val_map.txt") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read image: {exc}") from None
    if data.size == 0:
        raise DataError(f"{path}: image file is empty (0 bytes); {_BAD_FIX}")
    problem = _header_problem(path, data.tobytes())
    if problem:
        raise DataError(problem)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{path}: not a decodable image (corrupt or truncated JPEG?); "
                        f"{_BAD_FIX}")
    if img.shape[0] * img.shape[1] > max_image_pixels():  # a format without a parsed header
        raise DataError(f"{path}: {img.shape[1]} x {img.shape[0]} pixels is more than fastres "
                        f"preprocesses ({max_image_pixels():,}); downscale the file, or raise "
                        "FASTRES_MAX_IMAGE_PIXELS")
    return img


def resize_short_side(img: np.ndarray, short: int = RESIZE_SHORT_SIDE,
                      interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Resize so the short side is ``short``; the long side is ``int(short * long / short_in)``.
    Raises DataError when that would exceed :func:`max_image_pixels` (an extreme aspect ratio,
    e.g. a 1 x 60000 image would become 256 x 15,360,000)."""
    h, w = img.shape[:2]
    if h > w:
        new_w, new_h = short, int(short * h / w)
    else:
        new_h, new_w = short, int(short * w / h)
    if new_w * new_h > max_image_pixels():
        raise DataError(f"a {w} x {h} image would be resized to {new_w} x {new_h} (short side "
                        f"{short}): more than {max_image_pixels():,} pixels; its aspect ratio "
                        f"is too extreme for the reference preprocessing; {_BAD_FIX}")
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
    """Decode and preprocess one image file into ``fmt`` exactly as the reference harness does.
    Every DataError names the file."""
    img = decode_image(path)
    try:
        return convert(preprocess_bgr(img), fmt)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
