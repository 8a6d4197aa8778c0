"""The ImageNet validation set laid out as MLPerf uses it: a folder of images and a
``val_map.txt`` listing ``<relative path> <label>`` per line, plus the calibration lists
(``cal_image_list_option_1.txt``: one file name a line) used to build INT8 engines.

The reference harness (mlcommons/inference ``python/imagenet.py``) reads val_map.txt in order,
silently drops images that do not exist (logging "reduced image list, N images not found") and
stops after ``--count`` found images. :class:`ImagenetDataset` does the same when asked
(``skip_missing=True``) and otherwise refuses a missing image, because a benchmark that quietly
runs on fewer images than the user thinks reports accuracy on a different set.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from ..errors import DataError, InvalidArgument

NUM_CLASSES = 1000
VAL_MAP_NAME = "val_map.txt"

_log = logging.getLogger("fastres.data")

# A label may be written with a sign so that "-1" is reported as out of range rather than as
# "not an integer"; int() alone would also accept "1_0" and non-ASCII digits.
_LABEL_RE = re.compile(r"[+-]?[0-9]+")


def _read_lines(path: Path, what: str, fix: str) -> list[str]:
    try:
        # utf-8-sig: a val_map.txt saved by a Windows editor starts with a BOM that would
        # otherwise become part of the first image name.
        # Split on "\n" only (after mapping \r\n and \r to it, as universal newlines would):
        # str.splitlines() would also break at form feeds and U+2028, and line numbers in
        # errors would no longer match what an editor shows.
        # Decoded in one piece: a text-mode file object reads a lone truncated BOM (b"\xef",
        # b"\xef\xbb") as an empty file instead of an encoding error (found by tests/test_fuzz.py).
        text = path.read_bytes().decode("utf-8-sig")
        return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found; {fix}") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected the {what} file; {fix}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: {what} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                        "is this the right file?") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None


_VAL_MAP_FIX = ("--dataset-path should be the folder holding val_map.txt and the images "
                "(or pass the val_map file explicitly)")


def _parse_val_map_numbered(path: str | os.PathLike[str]) -> list[tuple[int, str, int]]:
    """(line number, relative path, label) per entry, so that later errors can cite the line."""
    path = Path(path)
    entries: list[tuple[int, str, int]] = []
    for lineno, line in enumerate(_read_lines(path, "val_map file", _VAL_MAP_FIX), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataError(f"{path.name} line {lineno}: expected '<path> <label>', "
                            f"got {line.strip()!r} ({path})")
        rel, label_text = fields
        if not _LABEL_RE.fullmatch(label_text):
            raise DataError(f"{path.name} line {lineno}: label {label_text!r} is not an integer "
                            f"0..{NUM_CLASSES - 1}; expected '<path> <label>', "
                            f"got {line.strip()!r} ({path})")
        label = int(label_text)
        if not 0 <= label < NUM_CLASSES:
            raise DataError(f"{path.name} line {lineno}: label {label} is outside "
                            f"0..{NUM_CLASSES - 1} ({path})")
        entries.append((lineno, rel, label))
    return entries


def parse_val_map(path: str | os.PathLike[str]) -> list[tuple[str, int]]:
    """Read an MLPerf ``val_map.txt``: ``(relative path, label)`` in file order.

    Blank lines are ignored; anything else that is not exactly two whitespace-separated fields
    with an integer label in 0..999 is a :class:`DataError` citing the file and line.
    """
    return [(rel, label) for _, rel, label in _parse_val_map_numbered(path)]


class ImagenetDataset:
    """The images listed in a val_map, in val_map order, restricted to those that exist.

    ``items`` holds ``(relative path, label)``; ``skipped`` counts missing images dropped with
    ``skip_missing=True``. ``count`` keeps the first ``count`` (existing) images, like the
    reference's ``--count``; images past it are never looked at.
    """

    def __init__(self, root: str | os.PathLike[str], val_map: str | os.PathLike[str] | None = None,
                 *, skip_missing: bool = False, count: int | None = None) -> None:
        self.root = Path(root)
        self.val_map = Path(val_map) if val_map is not None else self.root / VAL_MAP_NAME
        if count is not None and (isinstance(count, bool) or int(count) != count or count < 1):
            raise InvalidArgument(f"count must be a positive integer, got {count!r}")
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise DataError(f"dataset folder {self.root} {what}; {_VAL_MAP_FIX}")

        entries = _parse_val_map_numbered(self.val_map)
        if not entries:
            raise DataError(f"{self.val_map}: lists no images; expected lines '<path> <label>'")

        items: list[tuple[str, int]] = []
        skipped = 0
        for lineno, rel, label in entries:
            if count is not None and len(items) >= count:
                break
            if not (self.root / rel).is_file():
                if not skip_missing:
                    raise DataError(
                        f"{self.root / rel}: image not found ({self.val_map.name} line {lineno}); "
                        f"check --dataset-path, or pass --skip-missing to skip missing images "
                        f"as the reference harness does")
                skipped += 1
                continue
            items.append((rel, label))

        if skipped:
            _log.warning("reduced image list, %d images not found", skipped)
        if not items:
            raise DataError(f"none of the {len(entries)} images listed in {self.val_map} exist "
                            f"under {self.root}; {_VAL_MAP_FIX}")
        if count is not None and len(items) < count:
            raise InvalidArgument(
                f"count {count} is larger than the {len(items)} images available in {self.root} "
                f"({self.val_map.name}{f', {skipped} missing skipped' if skipped else ''}); "
                f"pass --count {len(items)} or fewer")

        self.items: list[tuple[str, int]] = items
        self.skipped: int = skipped
        self.labels: np.ndarray = np.fromiter((lbl for _, lbl in items), dtype=np.int32,
                                              count=len(items))

    def __len__(self) -> int:
        return len(self.items)

    def path(self, i: int) -> Path:
        """The image file of sample ``i``."""
        return self.root / self.items[i][0]

    @property
    def files(self) -> list[str]:
        """Relative paths in sample order."""
        return [rel for rel, _ in self.items]

    def __repr__(self) -> str:
        extra = f", skipped={self.skipped}" if self.skipped else ""
        return f"ImagenetDataset({str(self.root)!r}, {len(self)} images{extra})"


def read_calibration_list(path: str | os.PathLike[str]) -> list[str]:
    """Read an MLPerf calibration list (``cal_image_list_option_1.txt``): one file name a line."""
    path = Path(path)
    fix = ("pass the calibration list file (MLPerf's calibration/ImageNet/"
           "cal_image_list_option_1.txt)")
    names: list[str] = []
    for lineno, line in enumerate(_read_lines(path, "calibration list", fix), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 1:
            raise DataError(f"{path.name} line {lineno}: expected one image file name, "
                            f"got {line.strip()!r} ({path})")
        names.append(fields[0])
    if not names:
        raise DataError(f"{path}: calibration list is empty; {fix}")
    return names


def calibration_indices(dataset: ImagenetDataset, names: list[str]) -> np.ndarray:
    """Dataset indices of the calibration images, in list order.

    A name matches a val_map path exactly or, failing that, by its file name, because the
    calibration lists carry bare file names while a val_map may use sub-folders.
    """
    by_path: dict[str, int] = {}
    by_name: dict[str, int] = {}
    for i, (rel, _) in enumerate(dataset.items):
        by_path.setdefault(rel, i)
        by_name.setdefault(os.path.basename(rel), i)
    out = np.empty(len(names), dtype=np.int64)
    for j, name in enumerate(names):
        i = by_path.get(name)
        if i is None:
            i = by_name.get(os.path.basename(name))
        if i is None:
            raise DataError(f"calibration image {name!r} is not among the {len(dataset)} "
                            f"images of {dataset.val_map} (not listed, missing, or past "
                            f"--count); use the calibration list that matches this dataset")
        out[j] = i
    return out


__all__ = [
    "NUM_CLASSES",
    "ImagenetDataset",
    "parse_val_map",
    "read_calibration_list",
    "calibration_indices",
]
