"""The embedded default: an ImageNet-layout dataset and a ResNet50 made locally from a seed.

Neither ImageNet nor pretrained weights can be downloaded here, yet the benchmark needs a model
whose accuracy means something: a harness bug that shuffles samples, drops the background
offset or corrupts the int8 layout must show up as an accuracy drop, which a randomly
initialised network (it predicts one or two classes for every image) would never reveal. So:

- :func:`make_dataset` draws JPEGs whose class is a procedural texture (palette, grating,
  blobs) that survives the reference resize/crop, with per-image jitter and noise;
- :func:`make_model` builds the real ResNet50 v1.5 graph with random weights normalised on the
  data (batch statistics folded into each conv, so activations neither explode nor collapse)
  and fits only the classifier head on the pooled features, reaching ≥ 99 % top-1;
- :func:`make_default` caches both under a folder keyed by variant, size, seed and
  :data:`GEN_VERSION`, and rebuilds when the cache is incomplete or damaged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from .._files import sha256_file
from ..errors import DataError, InvalidArgument
from ..progress import Progress
from . import preprocess as _pp

#: Bumped whenever the generated images or model change; part of the cache folder's name.
GEN_VERSION = 1

#: The MLPerf resnet50_v1.onnx interface.
INPUT_NAME = "input_tensor:0"
ARGMAX_NAME = "ArgMax:0"
SOFTMAX_NAME = "softmax_tensor:0"
NUM_OUTPUTS = 1001  # class 0 is background: label = ArgMax - 1
BATCH_DIM = "unk__batch"

VAL_MAP_NAME = "val_map.txt"
CAL_LIST_NAME = "cal_image_list_option_1.txt"
META_NAME = "meta.json"
VARIANTS = ("resnet50", "tiny")
MODEL_FILE = {"resnet50": "resnet50_v1.onnx", "tiny": "tiny.onnx"}

#: Distinct labels in a synthetic dataset (see :func:`class_labels` for why 250).
NUM_SYNTHETIC_CLASSES = 250
NUM_LABELS = 1000

_OPSET = 13
_IR_VERSION = 8
_THREADS = max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                       else os.cpu_count() or 1, 8))


def _image_name(index: int) -> str:
    return f"ILSVRC2012_val_{index + 1:08d}.JPEG"


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator per (seed, purpose, item), so that images can be drawn in any
    order or in parallel and still come out identical."""
    return np.random.default_rng([int(seed), *stream])


# --------------------------------------------------------------------------------------------
# Dataset


def class_labels(seed: int = 0) -> np.ndarray:
    """The ImageNet labels (0..999) that the synthetic classes stand for, sorted.

    250 classes: with the default 1024 images each class has about four images, so the head is
    fitted on intra-class variation (pose of the grating, blob layout, noise, size, grayscale)
    rather than on single images, which is what gives it margins against the int8 and
    DALI-resize perturbations later stages feed in. Far fewer classes would make a wrong label
    mapping too likely to go unnoticed; 1000 classes would leave one image per class. Labels are
    spread over 0..999 and always include 0 and 999, so an off-by-one in the background offset
    (ArgMax - 1) hits the ends of the range.
    """
    rng = _rng(seed, 1)
    inner = rng.choice(np.arange(1, NUM_LABELS - 1), NUM_SYNTHETIC_CLASSES - 2, replace=False)
    return np.sort(np.concatenate([[0, NUM_LABELS - 1], inner])).astype(np.int64)


@dataclass(frozen=True)
class _ClassStyle:
    palette: np.ndarray  # [3, 3] RGB: background, grating, blobs
    theta: float  # grating orientation, radians
    cycles: float  # grating cycles across the short side
    sharpness: float  # 0: sine grating, larger: closer to square bars
    plaid: float  # amplitude of a second, perpendicular grating
    blob_density: float  # blobs per (short side)^2
    blob_radius: float  # as a fraction of the short side


def _class_style(seed: int, k: int) -> _ClassStyle:
    """Class k's texture. Orientation and frequency are stratified over the classes (8
    orientations x 5 frequencies) and the palette is random, so neighbouring classes differ in
    at least one coarse cue; frequencies stay well below the Nyquist limit of the 224 crop
    (at most 16 cycles over 256 pixels) so resizing never aliases one class into another."""
    rng = _rng(seed, 2, k)
    palette = rng.uniform(20, 235, size=(3, 3))
    # Keep the grating visible: push its colour away from the background's.
    diff = palette[1] - palette[0]
    norm = float(np.linalg.norm(diff))
    if norm < 90:
        palette[1] = np.clip(palette[0] + (diff / max(norm, 1e-6)) * 90, 0, 255)
    theta = (k % 8) * np.pi / 8 + rng.uniform(-0.05, 0.05)
    cycles = (3.0, 5.0, 7.5, 11.0, 15.0)[(k // 8) % 5] * rng.uniform(0.95, 1.05)
    return _ClassStyle(palette=palette.astype(np.float32), theta=float(theta),
                       cycles=float(cycles), sharpness=float(rng.choice([0.0, 0.0, 3.0, 8.0])),
                       plaid=float(rng.choice([0.0, 0.0, 0.35])),
                       blob_density=float(rng.uniform(2, 12)),
                       blob_radius=float(rng.uniform(0.03, 0.09)))


def _draw_image(style: _ClassStyle, rng: np.random.Generator, gray: bool) -> np.ndarray:
    """One image of a class: the class texture at a random size, aspect and phase, plus
    per-image jitter (orientation, frequency, brightness, contrast) and pixel noise. Returns BGR
    (or single-channel) uint8."""
    short = int(rng.integers(160, 501))
    aspect = float(rng.uniform(1.0, 2.0))
    long_ = int(round(short * aspect))
    h, w = (short, long_) if rng.random() < 0.5 else (long_, short)

    theta = style.theta + rng.uniform(-0.04, 0.04)
    freq = 2 * np.pi * style.cycles * rng.uniform(0.96, 1.04) / short
    y = np.arange(h, dtype=np.float32)[:, None]
    x = np.arange(w, dtype=np.float32)[None, :]
    phase = np.float32(rng.uniform(0, 2 * np.pi))
    t = np.cos((x * np.float32(np.cos(theta) * freq) + y * np.float32(np.sin(theta) * freq))
               + phase)
    if style.sharpness > 0:
        t = np.tanh(t * np.float32(style.sharpness)) / np.float32(np.tanh(style.sharpness))
    if style.plaid > 0:
        t2 = np.cos(x * np.float32(-np.sin(theta) * freq * 0.5)
                    + y * np.float32(np.cos(theta) * freq * 0.5)
                    + np.float32(rng.uniform(0, 2 * np.pi)))
        t = (t + np.float32(style.plaid) * t2) / np.float32(1 + style.plaid)
    mix = (t * np.float32(0.5) + np.float32(0.5))[:, :, None]  # 0: background, 1: grating
    bg, fg, blob = style.palette
    img = bg + mix * (fg - bg)

    n_blobs = int(round(style.blob_density * h * w / (short * short) * rng.uniform(0.85, 1.15)))
    if n_blobs:
        layer = np.zeros((h, w), np.float32)
        centres = rng.uniform(0, 1, size=(n_blobs, 2)) * (w, h)
        radii = short * style.blob_radius * rng.uniform(0.8, 1.2, size=n_blobs)
        for (cx, cy), r in zip(centres, radii):
            cv2.circle(layer, (int(cx), int(cy)), max(2, int(r)), 1.0, -1, cv2.LINE_AA)
        img += layer[:, :, None] * (blob - img)

    gain = np.float32(rng.uniform(0.93, 1.07))
    offset = np.float32(rng.uniform(-6, 6))
    img = img * gain + offset
    img += rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(rng.uniform(3, 6))
    rgb = np.clip(img, 0, 255).astype(np.uint8)
    if gray:
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _dataset_plan(n_images: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image: its class index, whether it is grayscale; and the calibration images.

    Classes are dealt round-robin and then shuffled, so every class has ``n // 250`` or one more
    images and the order of val_map.txt carries no class structure (as in ImageNet's)."""
    rng = _rng(seed, 3)
    classes = rng.permutation(np.arange(n_images) % NUM_SYNTHETIC_CLASSES)
    n_gray = max(1, int(round(0.05 * n_images)))
    gray = np.zeros(n_images, dtype=bool)
    gray[rng.choice(n_images, n_gray, replace=False)] = True
    n_cal = min(100, max(1, n_images // 10))
    cal = np.sort(rng.choice(n_images, n_cal, replace=False))
    return classes, gray, cal


def make_dataset(out_dir: str | os.PathLike[str], n_images: int = 1024, seed: int = 0,
                 quiet: bool = False) -> Path:
    """Write ``n_images`` synthetic JPEGs, ``val_map.txt`` and ``cal_image_list_option_1.txt``
    into ``out_dir`` (created; must be empty if it exists). Deterministic in ``seed``: images
    are drawn from per-image generators, so the result does not depend on thread scheduling.

    About 5 % of the images are true single-channel JPEGs (the reference decoder replicates
    them to three channels), and sizes vary (short side 160..500, aspect 1..2, landscape and
    portrait), so both upsampling and downsampling resizes are exercised.
    """
    n_images = _check_positive_int(n_images, "n_images")
    seed = _check_seed(seed)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidArgument(f"{out}: make_dataset needs an empty or new folder; "
                              "delete it or choose another path")
    out.mkdir(parents=True, exist_ok=True)

    labels = class_labels(seed)
    classes, gray, cal = _dataset_plan(n_images, seed)
    styles: dict[int, _ClassStyle] = {}
    for k in np.unique(classes):
        styles[int(k)] = _class_style(seed, int(k))

    def write(i: int) -> None:
        rng = _rng(seed, 4, i)
        img = _draw_image(styles[int(classes[i])], rng, bool(gray[i]))
        quality = int(rng.integers(80, 96))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise DataError(f"{out / _image_name(i)}: OpenCV could not encode a JPEG; "
                            "check the opencv-python-headless installation")
        buf.tofile(str(out / _image_name(i)))

    with Progress(n_images, "synthetic images", quiet=quiet, unit="img") as bar, \
            ThreadPoolExecutor(_THREADS) as pool:
        for _ in pool.map(write, range(n_images)):
            bar.update(1)

    lines = [f"{_image_name(i)} {int(labels[classes[i]])}\n" for i in range(n_images)]
    (out / VAL_MAP_NAME).write_text("".join(lines))
    (out / CAL_LIST_NAME).write_text("".join(f"{_image_name(int(i))}\n" for i in cal))
    return out


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgument(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidArgument(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


# --------------------------------------------------------------------------------------------
# Model graph


@dataclass
class _Act:
    """An activation while the graph is drawn: its tensor name and, when a calibration batch
    is flowing, its value on that batch."""
    name: str
    channels: int
    value: np.ndarray | None = None


class _GraphBuilder:
    """Emits ONNX nodes and, when given a calibration batch, runs each layer on it as it is
    drawn, so every conv can be normalised with its own output statistics before the next
    layer sees it — batch normalisation folded into the conv, with batch statistics instead of
    learned ones. That keeps a random 50-layer network's activations at unit scale and its
    pooled features spread across images instead of collapsing onto one direction."""

    def __init__(self, rng: np.random.Generator, threads: int = _THREADS,
                 on_layer: Callable[[], None] | None = None) -> None:
        self.rng = rng
        self.threads = threads
        self.on_layer = on_layer
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def _node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def _init(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def conv(self, x: _Act, cout: int, k: int, stride: int, name: str, *, gain: float = 1.0,
             relu: bool = True) -> _Act:
        """k x k conv (He-initialised), normalised per output channel on the calibration batch
        to mean 0 and standard deviation ``gain``, then an optional ReLU."""
        fan_in = x.channels * k * k
        w = self.rng.standard_normal((cout, x.channels, k, k), dtype=np.float32)
        w *= np.float32(np.sqrt(2.0 / fan_in))
        b = np.zeros(cout, np.float32)
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)
        y_value = None
        if x.value is not None:
            y = _run_single_node("Conv", x.value, [w], attrs, self.threads)
            mean = y.mean(axis=(0, 2, 3))
            y -= mean[None, :, None, None]
            std = np.sqrt(np.square(y).mean(axis=(0, 2, 3)))
            scale = (gain / np.maximum(std, 1e-6)).astype(np.float32)
            w = w * scale[:, None, None, None]
            b = (-mean * scale).astype(np.float32)
            y *= scale[None, :, None, None]
            if relu:
                np.maximum(y, 0, out=y)
            y_value = y
            if self.on_layer is not None:
                self.on_layer()
        out = self._node("Conv", [x.name, self._init(name + "/weights", w),
                                  self._init(name + "/bias", b)], name, **attrs)
        if relu:
            out = self._node("Relu", [out], name + "/relu")
        return _Act(out, cout, y_value)

    def max_pool(self, x: _Act, name: str) -> _Act:
        attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
        value = None if x.value is None else _run_single_node("MaxPool", x.value, [], attrs,
                                                               self.threads)
        return _Act(self._node("MaxPool", [x.name], name, **attrs), x.channels, value)

    def avg_pool(self, x: _Act, k: int, name: str) -> _Act:
        attrs = dict(kernel_shape=[k, k], strides=[k, k])
        value = None if x.value is None else _run_single_node("AveragePool", x.value, [], attrs,
                                                               self.threads)
        return _Act(self._node("AveragePool", [x.name], name, **attrs), x.channels, value)

    def add_relu(self, a: _Act, b: _Act, name: str) -> _Act:
        value = None
        if a.value is not None and b.value is not None:
            value = np.maximum(a.value + b.value, 0)
        out = self._node("Relu", [self._node("Add", [a.name, b.name], name + "/add")],
                         name + "/relu")
        return _Act(out, a.channels, value)

    def global_pool(self, x: _Act, name: str) -> _Act:
        """Global average pool, flattened to [N, C]: the features the head is fitted on."""
        pooled = self._node("GlobalAveragePool", [x.name], name + "/pool")
        out = self._node("Flatten", [pooled], name, axis=1)
        value = None if x.value is None else x.value.mean(axis=(2, 3))
        return _Act(out, x.channels, value)

    def head(self, features: _Act, weight: np.ndarray, bias: np.ndarray) -> None:
        """FC to 1001 classes, softmax, and ArgMax over the logits under MLPerf's names."""
        logits = self._node("Gemm", [features.name, self._init("dense/kernel", weight),
                                     self._init("dense/bias", bias)], "dense/logits", transB=1)
        self._node("Softmax", [logits], SOFTMAX_NAME, axis=1)
        self._node("ArgMax", [logits], ARGMAX_NAME, axis=1, keepdims=0)

    def model(self, outputs: list[tuple[str, int, list[Any]]], graph_name: str) -> Any:
        from onnx import TensorProto, checker, helper

        graph = helper.make_graph(
            self.nodes, graph_name,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                           [BATCH_DIM, 3, _pp.IMAGE_SIZE, _pp.IMAGE_SIZE])],
            [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
            self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)],
                                  producer_name="fastres.data.synthetic",
                                  producer_version=str(GEN_VERSION))
        model.ir_version = _IR_VERSION
        checker.check_model(model, full_check=True)
        return model


def _run_single_node(op: str, x: np.ndarray, weights: list[np.ndarray], attrs: dict[str, Any],
                     threads: int) -> np.ndarray:
    """Run one ONNX op on ``x`` with onnxruntime: the calibration pass uses the same kernels
    as the final model, at the cost of one tiny session per layer."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)]
    node = helper.make_node(op, ["x"] + [t.name for t in inits], ["y"], **attrs)
    graph = helper.make_graph(
        [node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    return _session(model.SerializeToString(), threads).run(None, {"x": x})[0]


def _session(model: bytes | str, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # Spinning workers steal the core from whatever else runs (the other intra-op thread, a
    # preprocessing thread, another process) for no gain on millisecond-long conv kernels.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def _resnet50_body(g: _GraphBuilder, x: _Act) -> _Act:
    """ResNet50 v1.5 up to the pooled 2048-d features: the stride sits on the 3x3 conv of a
    bottleneck, the first block of each stage has a projection shortcut. The last conv of each
    residual branch is normalised to a smaller scale (``gain``), as zero- or small-gamma
    initialisation does, so the identity path dominates and the residual stream grows slowly
    over the 16 blocks instead of doubling its variance at every addition."""
    x = g.conv(x, 64, 7, 2, "stem/conv")
    x = g.max_pool(x, "stem/maxpool")
    for stage, (width, blocks, stride) in enumerate(
            [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1):
        for block in range(blocks):
            s = stride if block == 0 else 1
            p = f"stage{stage}/block{block + 1}"
            shortcut = x if block else g.conv(x, width * 4, 1, s, p + "/shortcut", relu=False)
            r = g.conv(x, width, 1, 1, p + "/conv1")
            r = g.conv(r, width, 3, s, p + "/conv2")
            r = g.conv(r, width * 4, 1, 1, p + "/conv3", relu=False, gain=0.5)
            x = g.add_relu(r, shortcut, p)
    return g.global_pool(x, "pooled")


def _tiny_body(g: _GraphBuilder, x: _Act) -> _Act:
    """A fast stand-in with the same interface for harness tests: 4x4 average pool to 56x56,
    two random normalised convs with ReLU (5x5 to 96 channels; after a 2x2 average pool, 3x3/2
    to 512), global average pool. About 0.2 GFLOP per image (ResNet50: 4.1), and still enough
    colour and texture statistics for the fitted head to separate the synthetic classes."""
    x = g.avg_pool(x, 4, "tiny/avgpool1")
    x = g.conv(x, 96, 5, 1, "tiny/conv1")
    x = g.avg_pool(x, 2, "tiny/avgpool2")
    x = g.conv(x, 512, 3, 2, "tiny/conv2")
    return g.global_pool(x, "pooled")


_BODIES: dict[str, Callable[[_GraphBuilder, _Act], _Act]] = {
    "resnet50": _resnet50_body, "tiny": _tiny_body}


_TINY_CONVS = 2
_RESNET50_CONVS = 1 + sum(3 * n + 1 for n in (3, 4, 6, 3))


# --------------------------------------------------------------------------------------------
# Fitting the head


#: Ridge strength per variant, relative to the number of samples, on standardised features.
#: ResNet50's 2048 features interpolate 1024 images at any small strength, so it is set for
#: margin and hold-out accuracy instead; the tiny model's 512 features need a light touch to
#: reach 99 % on 1024 images.
_RIDGE = {"resnet50": 1e-2, "tiny": 1e-5}
#: Logit scale: fitted scores are ~1 for the class and ~0 otherwise; x8 makes the softmax
#: confident (top probability ~0.9 among 1001 outputs) like a trained network's.
_LOGIT_SCALE = 8.0


@dataclass
class _Head:
    classes: np.ndarray  # the labels (0..999) present, sorted
    mu: np.ndarray
    sd: np.ndarray
    w: np.ndarray  # [D, C] on standardised features
    b: np.ndarray  # [C]

    def scores(self, feats: np.ndarray) -> np.ndarray:
        return ((feats.astype(np.float64) - self.mu) / self.sd) @ self.w + self.b

    def predict(self, feats: np.ndarray) -> np.ndarray:
        """Predicted ArgMax (label + 1), as the ONNX head computes it."""
        return self.classes[self.scores(feats).argmax(axis=1)] + 1

    def top2_gap(self, feats: np.ndarray) -> np.ndarray:
        """Score of the best class minus the runner-up: below ~1e-5 float32 rounding in the
        ONNX Gemm may pick the other one."""
        scores = self.scores(feats)
        if scores.shape[1] < 2:
            return np.full(len(scores), np.inf)
        top2 = np.partition(scores, -2, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]

    def onnx_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """The FC layer over the raw pooled features, [1001, D] and [1001]: the standardisation
        folded in; background and absent labels get no weight and a bias below any fitted
        score, so they are never the ArgMax."""
        d = self.w.shape[0]
        weight = np.zeros((NUM_OUTPUTS, d), np.float64)
        bias = np.full(NUM_OUTPUTS, -0.5, np.float64)
        bias[0] = -2.0
        w_raw = self.w / self.sd[:, None]
        weight[self.classes + 1] = w_raw.T
        bias[self.classes + 1] = self.b - self.mu @ w_raw
        return ((weight * _LOGIT_SCALE).astype(np.float32),
                (bias * _LOGIT_SCALE).astype(np.float32))


def _fit_head(feats: np.ndarray, labels: np.ndarray, ridge: float) -> _Head:
    """Ridge regression onto one-hot targets over the labels present."""
    classes, y = np.unique(labels, return_inverse=True)
    x = feats.astype(np.float64)
    mu = x.mean(axis=0)
    sd = x.std(axis=0) + 1e-6 * (x.std() + 1e-12)
    z = (x - mu) / sd
    targets = np.zeros((len(y), len(classes)))
    targets[np.arange(len(y)), y] = 1.0
    t_mean = targets.mean(axis=0)
    gram = z.T @ z
    gram[np.diag_indices_from(gram)] += ridge * len(z)
    w = np.linalg.solve(gram, z.T @ (targets - t_mean))
    return _Head(classes=classes, mu=mu, sd=sd, w=w, b=t_mean)


def _holdout_top1(feats: np.ndarray, labels: np.ndarray, ridge: float) -> float | None:
    """Top-1 on one held-out image per class (classes with at least two images), the head
    fitted on the rest: how much of the accuracy is class structure the features capture,
    rather than single images memorised — the part that survives perturbed inputs."""
    seen: set[int] = set()
    counts = dict(zip(*np.unique(labels, return_counts=True)))
    test = np.zeros(len(labels), bool)
    for i, lab in enumerate(labels):
        if counts[lab] > 1 and lab not in seen:
            seen.add(int(lab))
            test[i] = True
    if not test.any():
        return None
    head = _fit_head(feats[~test], labels[~test], ridge)
    return float(np.mean(head.predict(feats[test]) - 1 == labels[test]))


# --------------------------------------------------------------------------------------------
# Model


def _read_val_map(dataset_dir: Path) -> tuple[list[Path], np.ndarray]:
    from .imagenet import parse_val_map

    items = parse_val_map(dataset_dir / VAL_MAP_NAME)
    if not items:
        raise DataError(f"{dataset_dir / VAL_MAP_NAME}: no images listed; regenerate the "
                        "dataset with make_dataset")
    return [dataset_dir / rel for rel, _ in items], np.asarray([lab for _, lab in items], np.int64)


def _preprocess_all(paths: list[Path], quiet: bool) -> np.ndarray:
    """Reference fp32 tensors of every image, [N, 3, 224, 224]."""
    out = np.empty((len(paths), 3, _pp.IMAGE_SIZE, _pp.IMAGE_SIZE), np.float32)

    def one(i: int) -> None:
        out[i] = _pp.preprocess_image(paths[i], "fp32")

    with Progress(len(paths), "preprocess", quiet=quiet, unit="img") as bar, \
            ThreadPoolExecutor(_THREADS) as pool:
        for _ in pool.map(one, range(len(paths))):
            bar.update(1)
    return out


def _preprocess_other_resize(path: Path, interpolation: int) -> np.ndarray:
    """The reference steps with another resize filter: a stand-in for DALI's resize, which
    differs from OpenCV's INTER_AREA by a few grey levels."""
    rgb = cv2.cvtColor(_pp.decode_image(path), cv2.COLOR_BGR2RGB)
    rgb = _pp.center_crop(_pp.resize_short_side(rgb, interpolation=interpolation))
    chw = rgb.astype(np.float32) - _pp.MEANS_RGB
    return np.ascontiguousarray(chw.transpose(2, 0, 1))


def _run(session: Any, inputs: np.ndarray, outputs: list[str], desc: str, quiet: bool,
         batch: int = 8) -> list[np.ndarray]:
    """Run ``session`` over ``inputs`` (any dtype; fed as float32) in batches."""
    parts: list[list[np.ndarray]] = [[] for _ in outputs]
    with Progress(len(inputs), desc, quiet=quiet, unit="img") as bar:
        for start in range(0, len(inputs), batch):
            chunk = inputs[start:start + batch].astype(np.float32, copy=False)
            for part, value in zip(parts, session.run(outputs, {INPUT_NAME: chunk})):
                part.append(value)
            bar.update(len(chunk))
    return [np.concatenate(p) for p in parts]


def _check_variant(variant: Any) -> str:
    if variant not in VARIANTS:
        raise InvalidArgument(f"unknown synthetic model variant {variant!r}: choose one of "
                              f"{', '.join(VARIANTS)}")
    return str(variant)


def make_model(dataset_dir: str | os.PathLike[str], out_path: str | os.PathLike[str],
               variant: str = "resnet50", seed: int = 0, quiet: bool = False) -> Path:
    """Build a model with the MLPerf ``resnet50_v1.onnx`` interface whose head is fitted to
    the dataset in ``dataset_dir``; write it to ``out_path`` and its quality figures to
    ``<out_path>.json``.

    Only the head is fitted, and on the features of the int8_linear inputs (the clipped,
    truncated tensors the NVIDIA harness feeds): the fp32 top-1 is then measured by running the
    final ONNX model over every fp32 image, inputs the head never saw, so the figure itself
    shows the margin against input quantisation. The int8 predictions come from the same
    features through the fitted head, which is checked to match the ONNX model on a subset;
    this keeps ResNet50 to two passes over the data on two CPU cores.
    """
    variant = _check_variant(variant)
    seed = _check_seed(seed)
    dataset_dir = Path(dataset_dir)
    out_path = Path(out_path)
    model_bytes, info = _build_model(dataset_dir, variant, seed, quiet)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(out_path, model_bytes)
    info["model_sha256"] = hashlib.sha256(model_bytes).hexdigest()
    _atomic_write(_sidecar(out_path), (json.dumps(info, indent=2) + "\n").encode())
    return out_path


def _sidecar(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".json")


def _build_model(dataset_dir: Path, variant: str, seed: int,
                 quiet: bool) -> tuple[bytes, dict[str, Any]]:
    """The serialised final model and its quality figures (the sidecar's content)."""
    from onnx import TensorProto

    timings: dict[str, float] = {}
    t_start = t = time.monotonic()

    def lap(name: str) -> None:
        nonlocal t
        now = time.monotonic()
        timings[name] = round(now - t, 2)
        t = now

    paths, labels = _read_val_map(dataset_dir)
    x = _preprocess_all(paths, quiet)
    lap("preprocess_s")
    rng = _rng(seed, 5, VARIANTS.index(variant))
    g, features = _normalised_body(x, variant, rng, quiet)
    lap("normalise_s")
    x_int8 = _pp.to_int8_linear(x)
    feats_int8 = _pooled_features(g, features, x_int8, variant, quiet)
    lap("features_s")

    ridge = _RIDGE[variant]
    head = _fit_head(feats_int8, labels, ridge)
    g.head(features, *head.onnx_weights())
    model_bytes = g.model([(ARGMAX_NAME, TensorProto.INT64, [BATCH_DIM]),
                           (SOFTMAX_NAME, TensorProto.FLOAT, [BATCH_DIM, NUM_OUTPUTS])],
                          variant).SerializeToString()
    lap("fit_s")

    figures = _measure(model_bytes, head, x, x_int8, feats_int8, paths, labels, rng, variant,
                       quiet)
    lap("accuracy_s")
    timings["total_s"] = round(time.monotonic() - t_start, 2)
    info: dict[str, Any] = {
        "variant": variant,
        "seed": seed,
        "gen_version": GEN_VERSION,
        "n_images": len(paths),
        "n_classes": int(len(head.classes)),
        "feature_dim": int(features.channels),
        **figures,
        "holdout_top1": _holdout_top1(feats_int8, labels, ridge),
        "ridge": ridge,
        "opset": _OPSET,
        "ir_version": _IR_VERSION,
        "onnxruntime_threads": _THREADS,
        "timings": timings,
    }
    if not quiet:
        holdout = info["holdout_top1"]
        print(f"{variant}: fp32 top-1 {info['fp32_top1']:.2%} on {len(paths)} images, "
              f"int8_linear agreement {info['fp32_int8_linear_agreement']:.2%}, hold-out top-1 "
              f"{'n/a' if holdout is None else f'{holdout:.2%}'}, "
              f"built in {timings['total_s']:.0f}s", file=sys.stderr)
    return model_bytes, info


def _normalised_body(x: np.ndarray, variant: str, rng: np.random.Generator,
                     quiet: bool) -> tuple[_GraphBuilder, _Act]:
    """Draw the variant's body, normalising each conv on 24 of the images."""
    calib = x[np.sort(rng.choice(len(x), min(len(x), 24), replace=False))].copy()
    n_convs = _RESNET50_CONVS if variant == "resnet50" else _TINY_CONVS
    with Progress(n_convs, f"{variant}: normalise convs", quiet=quiet, unit="conv") as bar:
        g = _GraphBuilder(rng, on_layer=lambda: bar.update(1))
        features = _BODIES[variant](g, _Act(INPUT_NAME, 3, calib))
    features.value = None
    return g, features


def _pooled_features(g: _GraphBuilder, features: _Act, inputs: np.ndarray, variant: str,
                     quiet: bool) -> np.ndarray:
    """The body's pooled features of every input, through a model that ends there."""
    from onnx import TensorProto

    model = g.model([(features.name, TensorProto.FLOAT, [BATCH_DIM, features.channels])],
                    variant)
    session = _session(model.SerializeToString(), _THREADS)
    (feats,) = _run(session, inputs, [features.name], f"{variant}: features (int8 inputs)",
                    quiet)
    return feats


def _measure(model_bytes: bytes, head: _Head, x: np.ndarray, x_int8: np.ndarray,
             feats_int8: np.ndarray, paths: list[Path], labels: np.ndarray,
             rng: np.random.Generator, variant: str, quiet: bool) -> dict[str, Any]:
    """Quality figures of the final model: fp32 top-1 from running it over every image; int8
    predictions from the fitted head on the int8 features, after checking on a subset that
    the model computes the same; agreement under a bilinear resize on that subset."""
    session = _session(model_bytes, _THREADS)
    argmax, softmax = _run(session, x, [ARGMAX_NAME, SOFTMAX_NAME],
                           f"{variant}: accuracy (fp32 inputs)", quiet)
    pred_int8 = head.predict(feats_int8)
    subset = np.sort(rng.choice(len(x), min(len(x), 32), replace=False))
    (model_int8,) = session.run([ARGMAX_NAME], {INPUT_NAME: x_int8[subset].astype(np.float32)})
    differ = (model_int8 != pred_int8[subset]) & (head.top2_gap(feats_int8[subset]) > 1e-4)
    if differ.any():
        raise AssertionError(f"the built {variant} model disagrees with its fitted head on "
                             f"{int(differ.sum())} int8 inputs; this is a bug in "
                             "fastres.data.synthetic")
    x_linear = np.stack([_preprocess_other_resize(paths[i], cv2.INTER_LINEAR) for i in subset])
    (model_linear,) = session.run([ARGMAX_NAME], {INPUT_NAME: x_linear})
    return {
        "fp32_top1": float(np.mean(argmax - 1 == labels)),
        "int8_linear_top1": float(np.mean(pred_int8 - 1 == labels)),
        "fp32_int8_linear_agreement": float(np.mean(pred_int8 == argmax)),
        "bilinear_resize_agreement": float(np.mean(model_linear == argmax[subset])),
        "bilinear_resize_subset": int(len(subset)),
        "background_predicted": int(np.sum(argmax == 0)),
        "median_top_probability": float(np.median(softmax.max(axis=1))),
    }


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# The cached default


#: Top-1 the default must reach; below it the generator or the fit is broken.
MIN_TOP1 = 0.99

_log = logging.getLogger("fastres.data")


@dataclass(frozen=True)
class SyntheticDefault:
    """A built synthetic dataset and model. ``accuracy`` is the fp32 top-1 of the model on
    the dataset measured when it was built; ``meta`` holds every other figure (meta.json)."""

    dataset_dir: Path
    val_map: Path
    cal_list: Path
    model_path: Path
    variant: str
    accuracy: float
    meta: dict[str, Any] = field(compare=False, repr=False)


def default_dir(cache_dir: str | os.PathLike[str], variant: str = "resnet50",
                n_images: int = 1024, seed: int = 0) -> Path:
    """The cache folder :func:`make_default` uses for these arguments."""
    return Path(cache_dir) / f"synthetic-{variant}-{n_images}-{seed}-v{GEN_VERSION}"


def make_default(cache_dir: str | os.PathLike[str], variant: str = "resnet50",
                 n_images: int = 1024, seed: int = 0, quiet: bool = False) -> SyntheticDefault:
    """The synthetic dataset and model, built once under ``cache_dir`` and reused after.

    A cache folder is used only if its meta.json (written last, and the folder renamed into
    place only after) matches the arguments, its model still has the recorded SHA-256 and every
    image listed is there; otherwise it is rebuilt, with a warning saying why. A build that was
    interrupted leaves only a hidden temporary folder, never a folder that looks complete.
    """
    variant = _check_variant(variant)
    n_images = _check_positive_int(n_images, "n_images")
    seed = _check_seed(seed)
    cache = Path(cache_dir)
    if cache.exists() and not cache.is_dir():
        raise InvalidArgument(f"cache folder {cache} is a file; pass a folder (it is created "
                              "if missing)")
    folder = default_dir(cache, variant, n_images, seed)
    reason = _cache_problem(folder, variant, n_images, seed)
    if reason is None:
        return _loaded(folder)
    if folder.exists():
        _log.warning("synthetic default in %s is not usable (%s); rebuilding it", folder, reason)
    elif not quiet:
        print(f"building the synthetic {variant} default ({n_images} images, seed {seed}) in "
              f"{folder}; this happens once", file=sys.stderr)
    _build_default(folder, variant, n_images, seed, quiet)
    return _loaded(folder)


def _build_default(folder: Path, variant: str, n_images: int, seed: int, quiet: bool) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        t0 = time.monotonic()
        dataset = make_dataset(tmp / "imagenet", n_images, seed, quiet=quiet)
        t_data = time.monotonic() - t0
        model = make_model(dataset, tmp / MODEL_FILE[variant], variant, seed, quiet=quiet)
        info = json.loads(_sidecar(model).read_text())
        if info["fp32_top1"] < MIN_TOP1:
            raise DataError(f"the synthetic {variant} model reached only {info['fp32_top1']:.2%} "
                            f"fp32 top-1 on {n_images} images (seed {seed}), below "
                            f"{MIN_TOP1:.0%}; this is a bug in fastres.data.synthetic — "
                            "report it, or try another seed")
        info["timings"]["dataset_s"] = round(t_data, 2)
        info["timings"]["total_s"] = round(time.monotonic() - t0, 2)
        meta = {
            **info,
            "dataset_dir": "imagenet",
            "val_map": f"imagenet/{VAL_MAP_NAME}",
            "cal_list": f"imagenet/{CAL_LIST_NAME}",
            "model": MODEL_FILE[variant],
            "class_labels": [int(v) for v in class_labels(seed)],
            "n_grayscale": int(_dataset_plan(n_images, seed)[1].sum()),
        }
        (tmp / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        try:
            os.rename(tmp, folder)
        except OSError:
            # Another process finished the same build first; keep whichever is valid.
            if _cache_problem(folder, variant, n_images, seed) is not None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _cache_problem(folder: Path, variant: str, n_images: int, seed: int) -> str | None:
    """Why ``folder`` cannot be reused, or None when it can."""
    meta_path = folder / META_NAME
    if not meta_path.is_file():
        return "no meta.json" if folder.exists() else "not built"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        return f"meta.json unreadable: {exc}"
    expected = {"gen_version": GEN_VERSION, "variant": variant, "n_images": n_images,
                "seed": seed}
    for key, value in expected.items():
        if meta.get(key) != value:
            return f"meta.json has {key}={meta.get(key)!r}, expected {value!r}"
    model = folder / str(meta.get("model", MODEL_FILE[variant]))
    if not model.is_file():
        return f"{model.name} missing"
    if sha256_file(model) != meta.get("model_sha256"):
        return f"{model.name} does not match the SHA-256 in meta.json (modified or truncated)"
    dataset = folder / str(meta.get("dataset_dir", "imagenet"))
    try:
        paths, _ = _read_val_map(dataset)
    except DataError as exc:
        return str(exc)
    if len(paths) != n_images:
        return f"val_map.txt lists {len(paths)} images, expected {n_images}"
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        return f"{len(missing)} images missing (e.g. {missing[0]})"
    if not (dataset / CAL_LIST_NAME).is_file():
        return f"{CAL_LIST_NAME} missing"
    return None


def _loaded(folder: Path) -> SyntheticDefault:
    meta = json.loads((folder / META_NAME).read_text())
    return SyntheticDefault(dataset_dir=folder / meta["dataset_dir"],
                            val_map=folder / meta["val_map"],
                            cal_list=folder / meta["cal_list"],
                            model_path=folder / meta["model"],
                            variant=meta["variant"], accuracy=float(meta["fp32_top1"]),
                            meta=meta)




__all__ = [
    "GEN_VERSION",
    "INPUT_NAME",
    "ARGMAX_NAME",
    "SOFTMAX_NAME",
    "NUM_OUTPUTS",
    "SyntheticDefault",
    "class_labels",
    "default_dir",
    "make_dataset",
    "make_model",
    "make_default",
]
