"""Online preprocessing (beyond MLPerf) against the offline store, through LoadGen, in one run:
the native SUT's Offline samples/s when it reads preprocessed tensors (MLPerf's way) and when it
decodes and preprocesses each batch's JPEGs with DALI inside the timed run
(``fastres.sut.online``), with DALI's output handed to the engine as is (``view``) or copied into
a buffer first (``copy``). One engine (one set of sessions/streams) serves all three, and the
runs alternate, so load from other processes hits each alike.

For the online rows it also prints how the engine time splits between DALI and the inner
engine (summed over the slots) and how many bytes fastres copied between them.

    python bench/online.py                                 # embedded ResNet50, the default engine
    python bench/online.py --variant tiny --engine onnxruntime --time 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from fastres import _core
from fastres import loadgen as flg
from fastres.data.imagenet import ImagenetDataset
from fastres.data.store import build_store
from fastres.data.synthetic import make_default
from fastres.sut.native import DEFAULT_ENGINE, ENGINES, NativeSUT, engine_fn, make_config
from fastres.sut.online import ONLINE_LABEL, EncodedSamples, OnlineSUT, make_online_engine


def offline_run(sut_cls, engine, data, config, settings, out_dir: Path) -> float:
    with sut_cls(engine, data, scenario="Offline", config=config) as sut:
        result = flg.run_test(sut.sut, sut.qsl, settings, out_dir)
        if sut.errors:
            raise SystemExit(f"{sut.errors} SUT errors: {sut.last_error}")
    return float(result.value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/fastres"))
    ap.add_argument("--variant", choices=["resnet50", "tiny"], default="resnet50")
    ap.add_argument("--engine", choices=[e for e in ENGINES if e != "null"],
                    default=DEFAULT_ENGINE)
    ap.add_argument("--time", type=float, default=10.0, help="seconds per run")
    ap.add_argument("--target-qps", type=float, default=None,
                    help="LoadGen's Offline expected QPS (default: 100 resnet50, 800 tiny)")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()

    default = make_default(Path(args.cache_dir) / "synthetic", args.variant)
    dataset = ImagenetDataset(default.dataset_dir, default.val_map)
    store = build_store(dataset, "fp32", args.cache_dir)
    config = make_config("Offline")
    inner = engine_fn(args.engine, store, config, model=default.model_path,
                      cache_dir=args.cache_dir)
    batch = int(config.batch_size)
    offline = _core.PythonEngine(inner, "float32", (3, 224, 224), batch)
    samples = EncodedSamples.from_store(store)
    online = {out: make_online_engine(inner, samples, config, output=out)
              for out in ("view", "copy")}
    target = args.target_qps or (100.0 if args.variant == "resnet50" else 800.0)
    settings = flg.make_settings("Offline", "performance", target_qps=target,
                                 min_duration_ms=int(args.time * 1000),
                                 max_duration_ms=int(args.time * 1000 * 6))
    rates: dict[str, list[float]] = {"offline (preprocessed store)": [],
                                     "online, DALI CPU, view": [], "online, DALI CPU, copy": []}
    split: dict[str, dict] = {}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            rates["offline (preprocessed store)"].append(
                offline_run(NativeSUT, offline, store, config, settings, Path(tmp) / f"o{r}"))
            for out, (engine, fn) in online.items():
                fn.reset_stats()
                name = f"online, DALI CPU, {out}"
                rates[name].append(offline_run(OnlineSUT, engine, samples, config, settings,
                                               Path(tmp) / f"{out}{r}"))
                split[name] = fn.stats()
    print(f"embedded {args.variant}, engine {args.engine}, Offline, batch {batch}, "
          f"{int(config.copy_streams)} slots, {args.time:g} s runs, median of {args.rounds}; "
          f"load average at start {load:.1f}; quick settings (not a valid MLPerf result)")
    print(f"online rows: {ONLINE_LABEL}")
    base = statistics.median(rates["offline (preprocessed store)"])
    for name, values in rates.items():
        rate = statistics.median(values)
        line = f"  {name:30s} {rate:8.1f} samples/s  {rate / base:5.2f}x offline"
        s = split.get(name)
        if s:
            total = s["preprocess_ns"] + s["inner_ns"]
            line += (f"   DALI {s['preprocess_ns'] / total:5.1%} / engine "
                     f"{s['inner_ns'] / total:5.1%} of the engine time; copied "
                     f"{s['copied_bytes'] / max(1, s['samples']):,.0f} B a sample")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
