"""The ImageNet layout: val_map.txt parsing, missing images, --count, calibration lists."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastres.data.imagenet import (
    ImagenetDataset,
    calibration_indices,
    parse_val_map,
    read_calibration_list,
)
from fastres.errors import DataError, InvalidArgument


def make_dataset(root: Path, n: int, *, missing: tuple[int, ...] = (),
                 subdir: str = "") -> list[tuple[str, int]]:
    """n fake images (existence is all the dataset checks) and their val_map.txt."""
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        rel = f"{subdir}ILSVRC2012_val_{i + 1:08d}.JPEG"
        label = (i * 37) % 1000
        items.append((rel, label))
        if i not in missing:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"\xff\xd8fake")
    (root / "val_map.txt").write_text("".join(f"{rel} {label}\n" for rel, label in items))
    return items


# --------------------------------------------------------------------------- parse_val_map

def test_parse_val_map_reads_paths_and_labels_in_order(tmp_path):
    p = tmp_path / "val_map.txt"
    p.write_text("a.JPEG 65\n\n  b.JPEG\t970  \r\nsub/c.JPEG 0\n\n\nd.JPEG 999")
    assert parse_val_map(p) == [("a.JPEG", 65), ("b.JPEG", 970), ("sub/c.JPEG", 0),
                                ("d.JPEG", 999)]


def test_parse_val_map_ignores_a_utf8_bom(tmp_path):
    p = tmp_path / "val_map.txt"
    p.write_bytes("\ufeffa.JPEG 1\n".encode())
    assert parse_val_map(p) == [("a.JPEG", 1)]


def test_parse_val_map_empty_file_is_empty(tmp_path):
    p = tmp_path / "val_map.txt"
    p.write_text("\n  \n")
    assert parse_val_map(p) == []


@pytest.mark.parametrize("bad, message", [
    ("foo", r"val_map\.txt line 3: expected '<path> <label>', got 'foo'"),
    ("a.JPEG 1 2", r"val_map\.txt line 3: expected '<path> <label>', got 'a.JPEG 1 2'"),
    ("a.JPEG one", r"val_map\.txt line 3: label 'one' is not an integer 0\.\.999"),
    ("a.JPEG 1.0", r"val_map\.txt line 3: label '1\.0' is not an integer"),
    ("a.JPEG 1_0", r"val_map\.txt line 3: label '1_0' is not an integer"),
    ("a.JPEG 1000", r"val_map\.txt line 3: label 1000 is outside 0\.\.999"),
    ("a.JPEG -1", r"val_map\.txt line 3: label -1 is outside 0\.\.999"),
])
def test_parse_val_map_errors_name_file_and_line(tmp_path, bad, message):
    p = tmp_path / "val_map.txt"
    p.write_text(f"x.JPEG 1\n\n{bad}\ny.JPEG 2\n")
    with pytest.raises(DataError, match=message) as info:
        parse_val_map(p)
    assert str(p) in str(info.value)


def test_missing_val_map_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"val_map\.txt: val_map file not found; "
                                        r"--dataset-path should be the folder holding"):
        parse_val_map(tmp_path / "val_map.txt")
    with pytest.raises(DataError, match="is a folder"):
        parse_val_map(tmp_path)


def test_binary_val_map_is_a_data_error(tmp_path):
    p = tmp_path / "val_map.txt"
    p.write_bytes(b"\xff\xfe\x00\x80garbage")
    with pytest.raises(DataError, match="not UTF-8"):
        parse_val_map(p)


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_./-", min_size=1, max_size=20)
_space = st.sampled_from([" ", "\t", "  ", " \t "])
_valid = st.builds(lambda lead, name, sep, label, trail: ("valid", (name, label),
                                                           f"{lead}{name}{sep}{label}{trail}"),
                   st.sampled_from(["", " ", "\t"]), _names, _space,
                   st.integers(0, 999), st.sampled_from(["", " ", "\t", "\r"]))
_blank = st.sampled_from(["", " ", "\t", "  \t"]).map(lambda s: ("blank", None, s))
_invalid = st.one_of(
    _names.map(lambda n: f"{n}"),                                            # one field
    st.tuples(_names, st.integers(0, 999), st.integers(0, 999))
      .map(lambda t: f"{t[0]} {t[1]} {t[2]}"),                               # three fields
    st.tuples(_names, st.integers(1000, 10**6)).map(lambda t: f"{t[0]} {t[1]}"),
    st.tuples(_names, st.integers(-10**6, -1)).map(lambda t: f"{t[0]} {t[1]}"),
    st.tuples(_names, _names.filter(lambda s: not re.fullmatch(r"[+-]?[0-9]+", s)))
      .map(lambda t: f"{t[0]} {t[1]}"),                                      # non-integer
).map(lambda s: ("invalid", None, s))


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(st.one_of(_valid, _valid, _blank, _invalid), max_size=25))
def test_parse_val_map_property(tmp_path_factory, lines):
    p = tmp_path_factory.mktemp("vm") / "val_map.txt"
    p.write_text("\n".join(text for _, _, text in lines), newline="")
    first_bad = next((i for i, (kind, _, _) in enumerate(lines, start=1) if kind == "invalid"),
                     None)
    if first_bad is None:
        assert parse_val_map(p) == [item for kind, item, _ in lines if kind == "valid"]
    else:
        with pytest.raises(DataError, match=rf"^val_map\.txt line {first_bad}: "):
            parse_val_map(p)


# --------------------------------------------------------------------------- ImagenetDataset

def test_dataset_lists_images_in_val_map_order(tmp_path):
    items = make_dataset(tmp_path / "imagenet", 5)
    ds = ImagenetDataset(tmp_path / "imagenet")
    assert ds.items == items
    assert len(ds) == 5 and ds.skipped == 0
    assert ds.val_map == tmp_path / "imagenet" / "val_map.txt"
    assert ds.labels.dtype == np.int32
    assert ds.labels.tolist() == [label for _, label in items]
    assert ds.path(3) == tmp_path / "imagenet" / "ILSVRC2012_val_00000004.JPEG"
    assert ds.files == [rel for rel, _ in items]


def test_dataset_with_val_map_elsewhere_and_subfolders(tmp_path):
    items = make_dataset(tmp_path / "imgs", 3, subdir="val/")
    vm = tmp_path / "maps" / "my_map.txt"
    vm.parent.mkdir()
    (tmp_path / "imgs" / "val_map.txt").rename(vm)
    ds = ImagenetDataset(tmp_path / "imgs", vm)
    assert ds.items == items and ds.val_map == vm
    assert ds.path(0) == tmp_path / "imgs" / "val" / "ILSVRC2012_val_00000001.JPEG"


def test_missing_image_names_file_and_line(tmp_path):
    make_dataset(tmp_path, 6, missing=(3,))
    with pytest.raises(DataError, match=r"ILSVRC2012_val_00000004\.JPEG: image not found "
                                        r"\(val_map\.txt line 4\).*--skip-missing"):
        ImagenetDataset(tmp_path)


def test_missing_image_line_number_counts_blank_lines(tmp_path):
    (tmp_path / "a.JPEG").write_bytes(b"x")
    (tmp_path / "val_map.txt").write_text("a.JPEG 1\n\n\nb.JPEG 2\n")
    with pytest.raises(DataError, match=r"b\.JPEG: image not found \(val_map\.txt line 4\)"):
        ImagenetDataset(tmp_path)


def test_skip_missing_counts_and_logs_like_the_reference(tmp_path, caplog):
    items = make_dataset(tmp_path, 8, missing=(0, 4, 5))
    with caplog.at_level(logging.WARNING, logger="fastres.data"):
        ds = ImagenetDataset(tmp_path, skip_missing=True)
    assert ds.skipped == 3 and len(ds) == 5
    assert ds.items == [items[i] for i in (1, 2, 3, 6, 7)]
    assert "reduced image list, 3 images not found" in caplog.text


def test_count_keeps_the_first_images(tmp_path):
    items = make_dataset(tmp_path, 10)
    ds = ImagenetDataset(tmp_path, count=4)
    assert ds.items == items[:4] and len(ds.labels) == 4


def test_count_ignores_missing_images_past_it(tmp_path):
    items = make_dataset(tmp_path, 10, missing=(7,))
    assert ImagenetDataset(tmp_path, count=5).items == items[:5]


def test_count_with_skip_missing_counts_found_images(tmp_path):
    items = make_dataset(tmp_path, 10, missing=(1, 2))
    ds = ImagenetDataset(tmp_path, skip_missing=True, count=4)
    assert ds.items == [items[i] for i in (0, 3, 4, 5)] and ds.skipped == 2


def test_count_larger_than_available_says_how_many(tmp_path):
    make_dataset(tmp_path, 10, missing=(2,))
    with pytest.raises(InvalidArgument, match=r"count 20 is larger than the 9 images available"
                                              r".*1 missing skipped.*--count 9 or fewer"):
        ImagenetDataset(tmp_path, skip_missing=True, count=20)


@pytest.mark.parametrize("count", [0, -3, 2.5, True])
def test_count_must_be_positive_integer(tmp_path, count):
    make_dataset(tmp_path, 3)
    with pytest.raises(InvalidArgument, match="count must be a positive integer"):
        ImagenetDataset(tmp_path, count=count)


def test_dataset_folder_errors(tmp_path):
    with pytest.raises(DataError, match=r"dataset folder .*nowhere does not exist; "
                                        r"--dataset-path should be"):
        ImagenetDataset(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"val_map\.txt: val_map file not found"):
        ImagenetDataset(tmp_path)


def test_empty_or_all_missing_dataset_is_an_error(tmp_path):
    (tmp_path / "val_map.txt").write_text("\n")
    with pytest.raises(DataError, match="lists no images"):
        ImagenetDataset(tmp_path)
    make_dataset(tmp_path, 3, missing=(0, 1, 2))
    with pytest.raises(DataError, match="none of the 3 images"):
        ImagenetDataset(tmp_path, skip_missing=True)


# --------------------------------------------------------------------------- calibration

def test_read_calibration_list(tmp_path):
    p = tmp_path / "cal_image_list_option_1.txt"
    p.write_text("ILSVRC2012_val_00000003.JPEG\n\n ILSVRC2012_val_00000001.JPEG \r\n")
    assert read_calibration_list(p) == ["ILSVRC2012_val_00000003.JPEG",
                                        "ILSVRC2012_val_00000001.JPEG"]


def test_calibration_list_errors(tmp_path):
    p = tmp_path / "cal.txt"
    with pytest.raises(DataError, match=r"cal\.txt: calibration list not found"):
        read_calibration_list(p)
    p.write_text("a.JPEG\na.JPEG 3\n")
    with pytest.raises(DataError, match=r"cal\.txt line 2: expected one image file name, "
                                        r"got 'a.JPEG 3'"):
        read_calibration_list(p)
    p.write_text("\n\n")
    with pytest.raises(DataError, match="calibration list is empty"):
        read_calibration_list(p)


def test_calibration_indices(tmp_path):
    make_dataset(tmp_path, 6, subdir="val/")
    ds = ImagenetDataset(tmp_path)
    # Bare file names match sub-folder paths; exact relative paths match too.
    idx = calibration_indices(ds, ["ILSVRC2012_val_00000005.JPEG",
                                   "val/ILSVRC2012_val_00000002.JPEG",
                                   "ILSVRC2012_val_00000001.JPEG"])
    assert idx.tolist() == [4, 1, 0]
    assert idx.dtype == np.int64


def test_calibration_name_not_in_dataset_is_named(tmp_path):
    make_dataset(tmp_path, 6)
    ds = ImagenetDataset(tmp_path, count=3)
    with pytest.raises(DataError, match=r"calibration image 'ILSVRC2012_val_00000005\.JPEG' "
                                        r"is not among the 3 images"):
        calibration_indices(ds, ["ILSVRC2012_val_00000001.JPEG",
                                 "ILSVRC2012_val_00000005.JPEG"])
