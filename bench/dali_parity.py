"""DALI preprocessing against the reference (OpenCV) preprocessing: how close the tensors are and
whether the synthetic model answers the same.

For every format it prints the max and mean absolute difference over all tensor elements (for
int8_chw4 over the three real channels), the share of elements that differ by more than 2 and
that are equal, and the top-1 agreement of the synthetic model on the fp32 tensors. With
``--photos`` it does the same on scikit-image's sample photographs saved as JPEG (needs
``pip install scikit-image``).
``--filters`` compares DALI's resize filters against INTER_AREA instead (fp32 only).

    python bench/dali_parity.py                          # embedded data, 1024 images, both models
    python bench/dali_parity.py --photos --variant tiny
    python bench/dali_parity.py --filters --count 512
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fastres.data import dali as fd
from fastres.data import preprocess as pp
from fastres.data import synthetic

FILTERS = ["INTERP_LINEAR", "INTERP_CUBIC", "INTERP_GAUSSIAN", "INTERP_LANCZOS3"]


def top1(model: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 per sample and its softmax lead over the second."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = len(os.sched_getaffinity(0))
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    top, lead = [], []
    for s in range(0, len(x), 16):
        arg, prob = sess.run([synthetic.ARGMAX_NAME, synthetic.SOFTMAX_NAME],
                             {synthetic.INPUT_NAME: x[s:s + 16]})
        best2 = np.sort(prob, axis=1)[:, -2:]
        top.append(arg.reshape(-1))
        lead.append(best2[:, 1] - best2[:, 0])
    return np.concatenate(top), np.concatenate(lead)


def opencv_linear(path: str) -> np.ndarray:
    """The reference steps with INTER_LINEAR: a baseline for how much a filter change moves
    the model's answers."""
    import cv2

    rgb = cv2.cvtColor(pp.decode_image(path), cv2.COLOR_BGR2RGB)
    crop = pp.center_crop(pp.resize_short_side(rgb, interpolation=cv2.INTER_LINEAR))
    return np.ascontiguousarray((crop.astype(np.float32) - pp.MEANS_RGB).transpose(2, 0, 1))


def preprocess_both(paths: list[str], fmt: str) -> tuple[np.ndarray, np.ndarray]:
    dtype, shape = pp.format_spec(fmt)
    ref = np.stack([pp.preprocess_image(p, fmt) for p in paths])
    out = np.empty((len(paths), *shape), dtype)
    fd.DaliPreprocessor(fmt).preprocess_files(paths, out)
    return ref, out


def row(name: str, ref: np.ndarray, got: np.ndarray) -> str:
    d = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    return (f"| {name} | {d.max():.0f} | {d.mean():.4f} | {np.mean(d > 2):.4%} | "
            f"{np.mean(d == 0):.2%} |")


def photo_paths(folder: Path) -> list[str]:
    """scikit-image's photographs as JPEGs (quality 90), plus a portrait and a small crop of
    each so that both enlarging and shrinking are exercised."""
    import cv2
    from skimage import data

    names = ["astronaut", "camera", "chelsea", "coffee", "rocket", "hubble_deep_field",
             "retina", "coins", "immunohistochemistry", "grass", "brick", "moon", "page"]
    paths = []
    for name in names:
        img = np.asarray(getattr(data, name)())
        if img.ndim == 3:
            img = cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)
        h, w = img.shape[:2]
        variants = {"": img, "_portrait": np.ascontiguousarray(np.swapaxes(img, 0, 1)),
                    "_crop": img[h // 5:h // 5 + max(120, h // 3),
                                 w // 7:w // 7 + max(170, w // 2)]}
        for suffix, v in variants.items():
            path = folder / f"{name}{suffix}.jpg"
            cv2.imwrite(str(path), v, [cv2.IMWRITE_JPEG_QUALITY, 90])
            paths.append(str(path))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/fastres/synthetic"))
    ap.add_argument("--count", type=int, default=1024)
    ap.add_argument("--variant", choices=["tiny", "resnet50", "both"], default="both")
    ap.add_argument("--photos", action="store_true", help="scikit-image's photographs instead")
    ap.add_argument("--filters", action="store_true", help="compare DALI resize filters")
    args = ap.parse_args()
    print(f"# DALI {fd.dali_version()} CPU vs reference OpenCV; load: {os.getloadavg()[0]:.1f}")

    variants = ["tiny", "resnet50"] if args.variant == "both" else [args.variant]
    default = synthetic.make_default(args.cache_dir, variants[0])
    if args.photos:
        tmp = tempfile.TemporaryDirectory()
        paths = photo_paths(Path(tmp.name))
        print(f"{len(paths)} JPEGs from scikit-image's sample photographs")
    else:
        from fastres.data.imagenet import ImagenetDataset

        ds = ImagenetDataset(default.dataset_dir, default.val_map, count=args.count)
        paths = [str(ds.path(i)) for i in range(len(ds))]
        print(f"{len(paths)} images of the embedded synthetic dataset")

    if args.filters:
        ref = np.stack([pp.preprocess_image(p, "fp32") for p in paths])
        print("| min_filter | mag_filter | max | mean | >2 | equal |")
        print("|---|---|---:|---:|---:|---:|")
        for mag in ["INTERP_LINEAR", "INTERP_GAUSSIAN", "INTERP_CUBIC"]:
            for mn in FILTERS:
                fd.MIN_FILTER, fd.MAG_FILTER = mn, mag
                out = np.empty_like(ref)
                fd.DaliPreprocessor("fp32").preprocess_files(paths, out)
                print(row(f"{mn[7:]} | {mag[7:]}", ref, out), flush=True)
        return

    print(f"filters: min {fd.MIN_FILTER}, mag {fd.MAG_FILTER}\n")
    print("| format | max abs diff | mean abs diff | elements > 2 | elements equal |")
    print("|---|---:|---:|---:|---:|")
    fp32 = None
    for fmt in pp.FORMATS:
        t = time.perf_counter()
        ref, got = preprocess_both(paths, fmt)
        if fmt == "int8_chw4":
            ref, got = ref[..., :3], got[..., :3]  # the zero padding channel would dilute it
        print(row(fmt, ref, got) + f" <!-- {time.perf_counter() - t:.0f}s -->", flush=True)
        if fmt == "fp32":
            fp32 = (ref, got)
    print()
    linear = np.stack([opencv_linear(p) for p in paths])
    for variant in variants:
        model = synthetic.make_default(args.cache_dir, variant).model_path
        (a, lead), (b, _), (c, _) = top1(model, fp32[0]), top1(model, fp32[1]), top1(model, linear)
        sure = lead >= 0.01
        print(f"synthetic {variant} model, fp32, top-1 agreement with the reference: DALI "
              f"{np.mean(a == b):.2%} ({int(np.sum(a != b))} of {len(a)} differ; "
              f"{np.mean(a[sure] == b[sure]):.2%} of the {int(sure.sum())} with a softmax lead "
              f">= 0.01); OpenCV INTER_LINEAR {np.mean(a == c):.2%}; median lead "
              f"{np.median(lead):.4f}", flush=True)

if __name__ == "__main__":
    sys.exit(main())
