"""Bad input, one test (or a few) per row of docs/bad-input.md.

Each case gets a clear error naming the problem and the fix, before any long work, or is
handled as the MLPerf reference handles it (``cv2.imread`` then BGR→RGB), checked against
that independent route.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import mlperf_loadgen as lg
import numpy as np
import onnx
import pytest

from fastres import loadgen as flg
from fastres.bench import cli
from fastres.data import preprocess as pre
from fastres.data.imagenet import ImagenetDataset
from fastres.data.preprocess import decode_image, preprocess_image
from fastres.data.store import DATA_NAME, build_store
from fastres.data.synthetic import make_default
from fastres.errors import DataError, InvalidArgument

MEANS_RGB = np.array([123.68, 116.78, 103.94], np.float32)


def reference_preprocess(path: Path) -> np.ndarray:
    """The reference's pre_process_vgg on cv2.imread, written out independently."""
    img = cv2.imread(str(path))
    assert img is not None
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    new_h, new_w = (256, (256 * w) // h) if h <= w else ((256 * h) // w, 256)
    img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA)
    top, left = (new_h - 224) // 2, (new_w - 224) // 2
    img = img[top:top + 224, left:left + 224].astype(np.float32) - MEANS_RGB
    return img.transpose(2, 0, 1)


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 1.5)


def jpeg_bytes(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def no_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the image was decoded although its header already says no")
    monkeypatch.setattr(pre.cv2, "imdecode", refuse)


# --------------------------------------------------------------------------------------------
# a small dataset and model that the CLI tests may damage (a copy per test)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_default(tmp_path_factory.mktemp("synthetic"), variant="tiny", n_images=32,
                        quiet=True)


@pytest.fixture
def data(tiny, tmp_path) -> Path:
    target = tmp_path / "imagenet"
    shutil.copytree(tiny.dataset_dir, target)
    return target


def bench(tiny, tmp_path, dataset: Path, *extra: str, quiet: bool = True) -> int:
    return cli.main(["--model", str(tiny.model_path), "--dataset-path", str(dataset),
                     "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"),
                     "--scenario", "Offline", "--mode", "accuracy", "--sut", "native",
                     "--engine", "onnxruntime", *extra] + (["--quiet"] if quiet else []))


def image_names(dataset: Path) -> list[str]:
    return [line.split()[0] for line in (dataset / "val_map.txt").read_text().splitlines()
            if line.strip()]


# --------------------------------------------------------------------------------------------
# images


def test_corrupt_jpeg_is_named_and_skip_bad_leaves_it_out(tiny, tmp_path, data, capsys):
    name = image_names(data)[5]
    (data / name).write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    assert bench(tiny, tmp_path, data) == 2
    err = capsys.readouterr().err
    assert name in err and "not a decodable image" in err and "--skip-bad" in err
    assert not (tmp_path / "out" / "results.json").exists()
    # --skip-bad: the other images are used, the bad one is listed
    assert bench(tiny, tmp_path, data, "--skip-bad") == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    skipped = results["settings"]["skipped_bad"]
    assert [s["file"] for s in skipped] == [name]
    assert results["settings"]["images"] == 31
    assert results["runs"][0]["accuracy_total"] == 31


def test_truncated_jpeg_is_named_whatever_opencv_would_do(tmp_path, monkeypatch):
    whole = jpeg_bytes(photo(300, 400))
    for cut in (len(whole) // 2, len(whole) - 2):  # mid-scan; only the end marker missing
        path = tmp_path / f"cut{cut}.JPEG"
        path.write_bytes(whole[:cut])
        with monkeypatch.context() as m:
            no_decoding(m)  # some OpenCV versions decode such files partially: never get there
            with pytest.raises(DataError, match=rf"cut{cut}\.JPEG: truncated JPEG"):
                preprocess_image(path)
    # bytes after the end-of-image marker are no truncation: decoded as OpenCV does
    padded = tmp_path / "padded.JPEG"
    padded.write_bytes(whole + b"\x00" * 64)
    np.testing.assert_array_equal(preprocess_image(padded), reference_preprocess(padded))


def test_zero_byte_jpeg_is_named(tmp_path):
    root = tmp_path / "imagenet"
    root.mkdir()
    (root / "a.JPEG").write_bytes(jpeg_bytes(photo(240, 320)))
    (root / "b.JPEG").write_bytes(b"")
    (root / "val_map.txt").write_text("a.JPEG 1\nb.JPEG 2\n")
    with pytest.raises(DataError, match=r"b\.JPEG: image file is empty \(0 bytes\).*--skip-bad"):
        build_store(ImagenetDataset(root), "fp32", tmp_path / "cache", workers=1, quiet=True)


def test_png_named_jpeg_is_decoded_as_png_like_the_reference(tmp_path):
    img = photo(260, 300)
    ok, png = cv2.imencode(".png", img)
    path = tmp_path / "n02105855_2933.JPEG"  # ImageNet's own PNG in disguise is named so
    path.write_bytes(png.tobytes())
    np.testing.assert_array_equal(decode_image(path), img)  # lossless: the very pixels
    np.testing.assert_array_equal(preprocess_image(path), reference_preprocess(path))
    rgba = np.dstack([img, np.full(img.shape[:2], 7, np.uint8)])  # alpha dropped, as imread
    ok, png = cv2.imencode(".png", rgba)
    path.write_bytes(png.tobytes())
    np.testing.assert_array_equal(preprocess_image(path), reference_preprocess(path))


def test_grayscale_and_cmyk_jpegs_are_decoded_as_cv2_imread_does(tmp_path):
    gray = tmp_path / "gray.JPEG"
    gray.write_bytes(jpeg_bytes(cv2.cvtColor(photo(300, 420), cv2.COLOR_BGR2GRAY)))
    Image = pytest.importorskip("PIL.Image")
    cmyk = tmp_path / "cmyk.JPEG"
    buf = io.BytesIO()
    Image.fromarray(photo(300, 400)[:, :, ::-1].copy()).convert("CMYK").save(buf, "JPEG",
                                                                             quality=95)
    cmyk.write_bytes(buf.getvalue())
    assert Image.open(cmyk).mode == "CMYK"
    for path in (gray, cmyk):
        np.testing.assert_array_equal(decode_image(path), cv2.imread(str(path)))
        np.testing.assert_array_equal(preprocess_image(path), reference_preprocess(path))


def _patch_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    i = 2
    while True:
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker == 0xC0:
            return data[:i + 5] + struct.pack(">HH", height, width) + data[i + 9:]
        i += 2 + length


def _png(width: int, height: int, rows: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def test_very_large_images_are_refused_before_decoding(tmp_path, monkeypatch):
    # a JPEG whose header claims 30000 x 30000 (2.5 GiB decoded) in a few kilobytes
    bomb = tmp_path / "bomb.JPEG"
    bomb.write_bytes(_patch_jpeg_size(jpeg_bytes(photo(64, 64)), 30000, 30000))
    png_bomb = tmp_path / "bomb.png.JPEG"
    png_bomb.write_bytes(_png(100_000, 100_000, b"\x00"))
    with monkeypatch.context() as m:
        no_decoding(m)
        with pytest.raises(DataError, match=r"bomb\.JPEG: 30000 x 30000 pixels is more than "
                                            r"fastres decodes \(89,478,485 pixels.*2\.5 GiB"):
            preprocess_image(bomb)
        with pytest.raises(DataError, match="100000 x 100000 pixels.*FASTRES_MAX_IMAGE_PIXELS"):
            preprocess_image(png_bomb)
    # an extreme aspect ratio: 1 x 40000 would be resized to 256 x 10,240,000
    strip = tmp_path / "strip.JPEG"
    strip.write_bytes(_png(40000, 1, b"\x00" + b"\x80" * 40000))
    with pytest.raises(DataError, match=r"strip\.JPEG: .*40000 x 1 image would be resized to "
                                        r"10240000 x 256"):
        preprocess_image(strip)
    # the limit moves with the environment; a bad value is named
    small = tmp_path / "small.JPEG"
    small.write_bytes(jpeg_bytes(photo(300, 400)))
    monkeypatch.setenv("FASTRES_MAX_IMAGE_PIXELS", "100000")
    with pytest.raises(DataError, match="400 x 300 pixels"):
        preprocess_image(small)
    monkeypatch.setenv("FASTRES_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(InvalidArgument, match="FASTRES_MAX_IMAGE_PIXELS='lots'"):
        preprocess_image(small)


def test_a_large_image_under_the_limit_is_preprocessed_as_the_reference(tmp_path):
    h, w = 3000, 4000  # 12 megapixels, a camera photo
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x // 7) % 256, (y // 5) % 256, ((x + y) // 11) % 256], -1).astype(np.uint8)
    path = tmp_path / "big.JPEG"
    path.write_bytes(jpeg_bytes(img))
    out = preprocess_image(path)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    np.testing.assert_array_equal(out, reference_preprocess(path))


# --------------------------------------------------------------------------------------------
# val_map.txt, model, user.conf, output folder, cache, command line


def test_val_map_with_bad_lines_is_refused_before_preprocessing(tiny, tmp_path, data, capsys):
    lines = (data / "val_map.txt").read_text().splitlines()
    for bad, message in ((f"{lines[2].split()[0]}", "line 3: expected '<path> <label>'"),
                         (f"{lines[2].split()[0]} 1000", "line 3: label 1000 is outside 0..999"),
                         (f"{lines[2].split()[0]} cat", "line 3: label 'cat' is not an integer")):
        (data / "val_map.txt").write_text("\n".join(lines[:2] + [bad] + lines[3:]) + "\n")
        assert bench(tiny, tmp_path, data) == 2
        err = capsys.readouterr().err
        assert "val_map.txt" in err and message in err, err
    assert not (tmp_path / "cache" / "store").exists()  # nothing was preprocessed


def test_model_with_wrong_inputs_or_outputs_is_refused_before_work(tiny, tmp_path, data, capsys):
    model = onnx.load(str(tiny.model_path))
    old = model.graph.output[0].name
    model.graph.output[0].name = "logits"
    for node in model.graph.node:
        node.output[:] = ["logits" if o == old else o for o in node.output]
    renamed = tmp_path / "renamed.onnx"
    onnx.save(model, str(renamed))
    assert bench(tiny, tmp_path, data, "--model", str(renamed)) == 2
    err = capsys.readouterr().err
    assert f"no output named {old!r}" in err and "logits" in err and "--output-name" in err
    # an NCHW model run as NHWC
    assert bench(tiny, tmp_path, data, "--data-format", "NHWC", "--sut", "all") == 2
    err = capsys.readouterr().err
    assert "is not [N, 224, 224, 3] (NHWC)" in err and "--data-format NCHW" in err
    assert not (tmp_path / "cache" / "store").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("line, message", [
    ("resnet50.Server.target_qsp = 10", "unknown key 'target_qsp'.*did you mean 'target_qps'"),
    ("resnet50.server.target_qps = 10", "unknown scenario 'server'.*did you mean 'Server'"),
    ("resnet.Server.target_qps = 10", "model 'resnet'.*did you mean resnet50.Server.target_qps"),
    ("*.*.qsl_rng_seed = 1", "takes 'qsl_rng_seed' only from its own mlperf.conf"),
    ("resnet50.Offline.target_latency = 5", "reads 'target_latency' only for SingleStream, "
                                            "MultiStream, Server, not Offline"),
    ("target_qps = 10", "is not '<model>.<scenario>.<key>'"),
])
def test_user_conf_with_unknown_keys_is_refused(tmp_path, line, message):
    conf = tmp_path / "user.conf"
    conf.write_text(f"# tuned\nresnet50.Server.target_qps = 100\n{line}\n")
    with pytest.raises(InvalidArgument, match=rf"line 3: .*{message}"):
        flg.make_settings("Server", user_conf=conf)


def test_loadgen_itself_ignores_those_lines_silently(tmp_path):
    """Why fastres checks: LoadGen parses the file, returns success, and drops the line."""
    conf = tmp_path / "user.conf"
    for line in ("resnet50.Server.target_qsp = 10", "resnet50.server.target_qps = 10",
                 "resnet.Server.target_qps = 10", "*.*.qsl_rng_seed = 1"):
        conf.write_text(line + "\n")
        settings = lg.TestSettings()
        before = (settings.server_target_qps, settings.qsl_rng_seed)
        assert settings.FromConfig(str(conf), "resnet50", "Server", 2) == 0
        assert (settings.server_target_qps, settings.qsl_rng_seed) == before, line


def test_user_conf_lines_loadgen_applies_are_accepted(tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("resnet50.Server.target_qps = 123\n*.Offline.target_qps = 5e2\n"
                    "resnet50.*.performance_sample_count_override = 512\n"
                    "bert.Server.target_qps = 7\n"  # another benchmark's line: LoadGen skips it
                    "retinanet.Offline.target_qps = 9\n")
    s = flg.make_settings("Server", user_conf=conf)
    assert (s.server_target_qps, s.offline_expected_qps,
            s.performance_sample_count_override) == (123.0, 500.0, 512)


def _fields(settings) -> dict:
    return {n: str(getattr(settings, n)) for n in dir(lg.TestSettings)
            if not n.startswith("_") and n != "FromConfig"}


def test_user_conf_key_table_matches_loadgen(tmp_path):
    """USER_CONF_KEYS says which (key, scenario) LoadGen applies; LoadGen must agree: a line
    '*.<scenario>.<key> = 3' changes a setting exactly for the listed pairs, and a key that
    only mlperf.conf may set changes nothing."""
    conf = tmp_path / "c.conf"
    base = _fields(lg.TestSettings())
    keys = list(flg.USER_CONF_KEYS) + list(flg.MLPERF_CONF_ONLY_KEYS)
    for key in keys:
        for scenario in flg.SCENARIOS:
            conf.write_text(f"*.{scenario}.{key} = 3\n")
            settings = lg.TestSettings()
            assert settings.FromConfig(str(conf), "resnet50", scenario, 2) == 0
            changed = _fields(settings) != base
            assert changed == (scenario in flg.USER_CONF_KEYS.get(key, ())), (key, scenario)


def test_cli_user_conf_with_an_unknown_key_fails_before_work(tiny, tmp_path, data, capsys):
    conf = tmp_path / "user.conf"
    conf.write_text("resnet50.Offline.target_qsp = 10\n")
    assert bench(tiny, tmp_path, data, "--user-conf", str(conf)) == 2
    assert "unknown key 'target_qsp'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_unwritable_output_folder_is_refused_before_work(tiny, tmp_path, data, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    rc = cli.main(["--model", str(tiny.model_path), "--dataset-path", str(data),
                   "--cache-dir", str(tmp_path / "cache"), "--output", str(blocker / "out"),
                   "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "a_file/out" in err and "cannot be created" in err and "writable folder" in err
    assert not (tmp_path / "cache").exists()  # nothing was preprocessed


def test_damaged_cache_is_rebuilt_and_the_run_goes_on(tiny, tmp_path, data, capsys):
    assert bench(tiny, tmp_path, data) == 0
    first = json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]
    (store_dir,) = (tmp_path / "cache" / "store").iterdir()
    array = store_dir / DATA_NAME
    with open(array, "r+b") as f:
        f.truncate(array.stat().st_size // 2)
    capsys.readouterr()
    assert bench(tiny, tmp_path, data, quiet=False) == 0  # --quiet would hide the notice
    err = capsys.readouterr().err
    assert f"preprocessed store {store_dir} is damaged" in err and "rebuilding it" in err
    again = json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]
    assert (again["accuracy_good"], again["accuracy_total"]) == (
        first["accuracy_good"], first["accuracy_total"])


@pytest.mark.parametrize("extra, message", [
    (["--official", "--time", "5"], "drop --time"),
    (["--sut", "reference", "--batch-size", "4"], "--batch-size sets the native SUT, which "
                                                  "--sut reference does not run"),
    (["--sut", "reference", "--engine", "null", "--issue", "objects"], "--engine, --issue set "
                                                                       "the native SUT"),
    (["--sut", "native", "--threads", "2"], "--threads sets the reference SUT"),
    (["--sut", "native", "--max-batchsize", "8"], "--max-batchsize sets the reference SUT"),
    (["--report-from", "somewhere", "--scenario", "all"], "--report-from runs nothing.*--scenario"),
    (["--no-find-peak", "--scenario", "Server", "--search-budget", "5"],
     "--search-budget only affects the Server peak search, which is off"),
    (["--scenario", "Offline", "--search-time", "2"], "no Server performance run"),
    (["--mode", "accuracy", "--audit", "TEST04"], "--mode performance or both"),
    (["--find-peak", "--target-qps", "5", "--scenario", "Server"], "drop --target-qps"),
])
def test_contradictory_cli_settings_fail_before_any_work(tiny, tmp_path, capsys, extra, message):
    rc = cli.main(["--model", str(tiny.model_path), "--dataset-path", str(tiny.dataset_dir),
                   "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"),
                   "--quiet", *extra])
    assert rc == 2
    err = capsys.readouterr().err
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()
