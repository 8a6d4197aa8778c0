"""``python -m fastres.bench``: the head-to-head command line.

With no arguments: the embedded synthetic default, quick settings, the Offline scenario,
performance and accuracy, every SUT available. Bad input is refused before any long work
(preprocessing, model building, runs) starts.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from .. import loadgen as flg
from ..errors import FastresError, InvalidArgument
from . import report

#: SUTs in the order they run and appear in tables; the first is the baseline.
SUTS = ("reference", "native")
DEFAULT_CACHE = Path(os.environ.get("FASTRES_CACHE", Path.home() / ".cache" / "fastres"))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastres.bench",
        description="Run MLPerf Inference ResNet50 under LoadGen with the reference harness "
                    "and fastres's native harness, and report the difference.")
    p.add_argument("--scenario", default="Offline",
                   help="SingleStream, MultiStream, Server, Offline; several comma-separated, "
                        "or 'all' (default: Offline)")
    p.add_argument("--mode", default="both", choices=("performance", "accuracy", "both"),
                   help="LoadGen test mode (default: both)")
    p.add_argument("--sut", default="all",
                   help=f"which SUTs to run: {', '.join(SUTS)}, comma-separated, or 'all'")
    p.add_argument("--model", type=Path,
                   help="ONNX model with MLPerf's interface (resnet50_v1.onnx); default: the "
                        "embedded synthetic ResNet50")
    p.add_argument("--dataset-path", type=Path,
                   help="ImageNet validation folder with val_map.txt; default: the embedded "
                        "synthetic dataset")
    p.add_argument("--val-map", type=Path, help="val_map.txt (default: <dataset-path>/val_map.txt)")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                   help=f"where preprocessed data and the synthetic default live (default: {DEFAULT_CACHE})")
    p.add_argument("--output", type=Path, default=Path("fastres-results"),
                   help="output folder for results.json, report.md and LoadGen logs")
    p.add_argument("--user-conf", type=Path, help="LoadGen user.conf applied after mlperf.conf")
    p.add_argument("--official", action="store_true",
                   help="LoadGen's official settings (mlperf.conf; runs take 10 minutes or more "
                        "each) instead of quick ones")
    p.add_argument("--max-batchsize", type=_positive_int, default=32,
                   help="largest batch the reference harness sends to the model (default: 32)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="reference harness worker threads (default: the number of cores)")
    p.add_argument("--time", type=_positive_float,
                   help="run duration in seconds (min and max duration), as the reference's --time")
    p.add_argument("--count", type=_positive_int,
                   help="use only the first COUNT images of the dataset, as the reference's --count")
    p.add_argument("--target-qps", type=_positive_float,
                   help="Server target QPS and Offline expected QPS")
    g = p.add_argument_group("native SUT (the executor; NVIDIA's knob names)")
    from ..sut.native import DEFAULT_ENGINE, ENGINES

    g.add_argument("--engine", default=DEFAULT_ENGINE, choices=ENGINES,
                   help=f"the native SUT's engine (default {DEFAULT_ENGINE}; null: no model, "
                        "measures the harness, its accuracy is meaningless)")
    g.add_argument("--batch-size", type=_positive_int, default=None,
                   help="largest batch the executor forms (default: per scenario)")
    g.add_argument("--copy-streams", type=_positive_int, default=None,
                   help="stream slots, i.e. batches in flight (default: per scenario)")
    g.add_argument("--infer-streams", type=_positive_int, default=None)
    g.add_argument("--complete-threads", type=_positive_int, default=None)
    g.add_argument("--batch-timeout-us", type=int, default=None,
                   help="how long the batcher waits to fill a batch (deque_timeout_usec; "
                        "default: per scenario)")
    g.add_argument("--deque-limit", type=int, default=None,
                   help="most samples one batcher take removes from the queue (0: all)")
    g.add_argument("--issue", default="fast", choices=("fast", "objects"),
                   help="LoadGen SUT kind for the native SUT: ConstructFastSUT or ConstructSUT")
    p.add_argument("--input-name", default="input_tensor:0", help="the model's image input")
    p.add_argument("--output-name", default="ArgMax:0", help="the model's top-1 output")
    p.add_argument("--data-format", default="NCHW", choices=("NCHW", "NHWC"),
                   help="the model's input layout (default: NCHW, as resnet50_v1.onnx)")
    p.add_argument("--skip-missing", action="store_true",
                   help="skip images listed in val_map.txt that are missing, and report the count")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


def _split(text: str, allowed: tuple[str, ...], what: str, parse=None) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise InvalidArgument(f"--{what}: empty; choose from {', '.join(allowed)} or 'all'")
    if len(items) == 1 and items[0].lower() == "all":
        return list(allowed)
    out = []
    for item in items:
        if parse is not None:
            name = parse(item)
        else:
            matches = [a for a in allowed if a.lower() == item.lower()]
            if not matches:
                raise InvalidArgument(f"--{what}: unknown {what} {item!r}; choose from "
                                      f"{', '.join(allowed)} or 'all'")
            name = matches[0]
        if name not in out:
            out.append(name)
    return out


def _log(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


def _validate(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that can be checked without doing work; raises InvalidArgument."""
    plan: dict[str, Any] = {}
    plan["scenarios"] = _split(args.scenario, flg.SCENARIOS, "scenario", flg.parse_scenario)
    plan["modes"] = ["performance", "accuracy"] if args.mode == "both" else [args.mode]
    plan["suts"] = _split(args.sut, SUTS, "sut")
    if args.user_conf is not None and not args.user_conf.is_file():
        raise InvalidArgument(f"--user-conf {args.user_conf}: file not found")
    if args.official and (args.time is not None):
        raise InvalidArgument("--official takes its durations from LoadGen's mlperf.conf; "
                              "drop --time (or drop --official for a quick run)")
    if args.dataset_path is not None:
        if not args.dataset_path.is_dir():
            raise InvalidArgument(f"--dataset-path {args.dataset_path}: not a folder; pass the "
                                  "ImageNet validation folder that holds val_map.txt")
        val_map = args.val_map or args.dataset_path / "val_map.txt"
        if not val_map.is_file():
            raise InvalidArgument(f"{val_map}: val_map.txt not found; pass --val-map or put "
                                  "MLPerf's val_map.txt in --dataset-path")
    elif args.val_map is not None:
        raise InvalidArgument("--val-map needs --dataset-path (the folder its paths are relative to)")
    if "native" in plan["suts"]:
        from ..sut.native import make_config

        for knob in ("batch_timeout_us", "deque_limit"):
            if getattr(args, knob) is not None and getattr(args, knob) < 0:
                raise InvalidArgument(f"--{knob.replace('_', '-')} must be >= 0, got {getattr(args, knob)}")
        from .. import _core
        from ..sut.native import check_buffers

        for scenario in plan["scenarios"]:
            config = make_config(scenario, **_native_knobs(args))
            config.validate(_core.NullEngine(max_batch=int(config.batch_size)))
            check_buffers(config, 3 * 224 * 224 * 4)
    if args.model is not None:
        from ..model import check_model
        check_model(args.model, args.input_name, args.output_name, args.data_format)
    return plan


def _environment() -> dict[str, Any]:
    import fastres

    env: dict[str, Any] = {"python": platform.python_version(), "fastres": fastres.__version__,
                           "platform": platform.platform(), "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    env["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for mod in ("onnxruntime", "numpy", "cv2", "onnx"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:
            env[mod] = None
    try:
        from importlib.metadata import version
        env["mlcommons-loadgen"] = version("mlcommons-loadgen")
    except Exception:
        env["mlcommons-loadgen"] = None
    info = fastres.build_info()
    env["fastres_with_cuda"] = info["with_cuda"]
    env["cuda_devices"] = [d["name"] for d in info["cuda"]["devices"]]
    return env


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _main(args)
    except FastresError as exc:
        print(f"fastres.bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastres.bench: interrupted", file=sys.stderr)
        return 130


def _resolve_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The model and dataset to run: the user's, or the embedded synthetic default."""
    chosen: dict[str, Any] = {"model": args.model, "dataset": args.dataset_path,
                              "val_map": args.val_map, "synthetic": False}
    if args.model is None or args.dataset_path is None:
        from ..data.synthetic import make_default

        _log(args, "fastres.bench: preparing the embedded synthetic default "
                   "(built once, then cached)")
        default = make_default(args.cache_dir / "synthetic", quiet=args.quiet)
        chosen["synthetic"] = True
        if args.model is None:
            chosen["model"] = default.model_path
            from ..model import check_model
            check_model(default.model_path, args.input_name, args.output_name, args.data_format)
        if args.dataset_path is None:
            chosen["dataset"] = default.dataset_dir
            chosen["val_map"] = default.val_map
        if (args.model is None) != (args.dataset_path is None):
            _log(args, "fastres.bench: warning: mixing a given "
                       f"{'dataset' if args.model is None else 'model'} with the synthetic "
                       f"{'model' if args.model is None else 'dataset'}: accuracy is meaningless")
    return chosen


def _settings_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw: dict[str, Any] = {"official": args.official, "user_conf": args.user_conf}
    if args.target_qps is not None:
        kw["target_qps"] = args.target_qps
    if args.time is not None:
        kw["min_duration_ms"] = int(args.time * 1000)
        kw["max_duration_ms"] = int(args.time * 1000)
    return kw


def _run_one(sut_name: str, args: argparse.Namespace, model: Path, store: Any, scenario: str,
             mode: str, out_dir: Path, **overrides: Any) -> dict[str, Any]:
    kw = _settings_kwargs(args)
    kw.update(overrides)
    settings = flg.make_settings(scenario, mode, **kw)
    if sut_name == "native":
        from ..sut.native import NativeSUT

        engine, config = _native_engine(args, model, store, scenario)
        with NativeSUT(engine, store, scenario=scenario, config=config, issue=args.issue) as sut:
            result = flg.run_test(sut.sut, sut.qsl, settings, out_dir)
            sut_errors = sut.errors
    elif sut_name == "reference":
        from ..sut.reference import ReferenceSUT

        with ReferenceSUT(model, store, scenario=scenario, threads=args.threads,
                          max_batchsize=args.max_batchsize, data_format=args.data_format,
                          input_name=args.input_name, output_name=args.output_name) as sut:
            result = flg.run_test(sut.sut, sut.qsl, settings, out_dir)
            sut_errors = sut.errors
    else:  # pragma: no cover - guarded by _validate
        raise InvalidArgument(f"unknown SUT {sut_name!r}")
    acc = None
    if mode == "accuracy":
        # The reference answers float32 (as MLPerf's reference), the native SUT int32.
        acc = flg.accuracy_from_log(out_dir / "mlperf_log_accuracy.json", store.labels,
                                    dtype="int32" if sut_name == "native" else "float32")
    return {
        "sut": sut_name, "scenario": scenario, "mode": mode,
        "metric": result.metric, "value": result.value,
        "valid": result.valid if mode == "performance" else None,
        "unmet": result.summary.unmet if mode == "performance" else [],
        "latencies_ns": result.summary.latencies_ns,
        "accuracy": acc.accuracy if acc else None,
        "accuracy_good": acc.good if acc else None,
        "accuracy_total": acc.total if acc else None,
        "sut_errors": sut_errors,
        "label": result.label, "quick": result.quick,
        "settings": {k: v for k, v in overrides.items()},
        "wall_s": round(result.wall_s, 3), "log_dir": str(out_dir),
    }


_ENGINES: dict[tuple, tuple[Any, Any]] = {}


def _native_knobs(args: argparse.Namespace) -> dict[str, Any]:
    return {"batch_size": args.batch_size, "copy_streams": args.copy_streams,
            "infer_streams": args.infer_streams, "complete_threads": args.complete_threads,
            "batch_timeout_us": args.batch_timeout_us, "deque_limit": args.deque_limit}


def _native_engine(args: argparse.Namespace, model: Path, store: Any,
                   scenario: str) -> tuple[Any, Any]:
    """The native engine and config for a scenario, built once per invocation and setting
    (ONNX Runtime sessions take seconds to create) and shared by the runs."""
    from ..sut.native import make_config, make_engine

    config = make_config(scenario, **_native_knobs(args))
    key = (args.engine, str(model), repr(config))
    if key not in _ENGINES:
        engine = make_engine(args.engine, store, config, model=model,
                             input_name=args.input_name, output_name=args.output_name)
        _ENGINES[key] = (engine, config)
    return _ENGINES[key]


class _QuickSizer:
    """Sizes quick runs to the SUT in front of it, since one fixed target cannot fit both a
    CPU ResNet50 (tens of samples/s) and a harness with a null engine (hundreds of thousands):

    - Offline: LoadGen issues ``expected_qps × min_duration`` samples; a SUT faster than that
      ends early and is INVALID ("Min duration satisfied: NO"), so such a run is repeated once
      with the expected QPS set from what it measured.
    - Server: the target QPS is half the SUT's Offline throughput (measured in this invocation,
      or by a short Offline probe), and the maximum duration leaves room for the minimum query
      count at that rate.
    """

    def __init__(self, args: argparse.Namespace, model: Path, store: Any, out_root: Path) -> None:
        self.args, self.model, self.store, self.out_root = args, model, store, out_root
        self.capacity: dict[str, float] = {}

    def enabled(self) -> bool:
        return not self.args.official and self.args.target_qps is None

    def run(self, sut_name: str, scenario: str, mode: str, run_dir: Path) -> dict[str, Any]:
        overrides: dict[str, Any] = {}
        if self.enabled() and scenario == "Server" and mode == "performance":
            target = max(1.0, 0.5 * self._capacity(sut_name))
            min_queries = flg.QUICK_DEFAULTS["Server"]["min_query_count"]
            overrides["target_qps"] = round(target, 2)
            if self.args.time is None:
                # Room for the minimum query count, but a quick run stays under a minute: a
                # SUT too slow for that is INVALID ("Min queries satisfied: NO"), as it should.
                overrides["max_duration_ms"] = min(60_000, max(flg.QUICK_MAX_DURATION_MS,
                                                               int(1500 * min_queries / target)))
        r = _run_one(sut_name, self.args, self.model, self.store, scenario, mode, run_dir,
                     **overrides)
        if (self.enabled() and scenario == "Offline" and mode == "performance"
                and not r["valid"] and "Min duration satisfied" in r["unmet"] and r["value"]):
            _log(self.args, f"    finished before the minimum duration; rerunning with "
                            f"expected QPS {1.5 * r['value']:,.0f}")
            r = _run_one(sut_name, self.args, self.model, self.store, scenario, mode, run_dir,
                         target_qps=round(1.5 * r["value"], 2))
        if scenario == "Offline" and mode == "performance" and r["value"]:
            self.capacity[sut_name] = r["value"]
        return r

    def _capacity(self, sut_name: str) -> float:
        if sut_name not in self.capacity:
            _log(self.args, f"    measuring {sut_name}'s Offline throughput to size the Server target")
            self.run(sut_name, "Offline", "performance", self.out_root / sut_name / "probe" / "Offline")
        return self.capacity[sut_name]


def _main(args: argparse.Namespace) -> int:
    plan = _validate(args)
    out_root = flg.prepare_output_dir(args.output)
    inputs = _resolve_inputs(args)

    from ..data.imagenet import ImagenetDataset
    from ..data.store import build_store

    dataset = ImagenetDataset(inputs["dataset"], inputs["val_map"], skip_missing=args.skip_missing,
                              count=args.count)
    if dataset.skipped:
        _log(args, f"fastres.bench: {dataset.skipped} images listed in val_map.txt are missing "
                   "and were skipped (--skip-missing)")
    store = build_store(dataset, "fp32", args.cache_dir, quiet=args.quiet)

    runs: list[dict[str, Any]] = []
    jobs = [(s, sc, m) for sc in plan["scenarios"] for s in plan["suts"] for m in plan["modes"]]
    started = time.monotonic()
    sizer = _QuickSizer(args, Path(inputs["model"]), store, out_root)
    for i, (sut_name, scenario, mode) in enumerate(jobs, 1):
        _log(args, f"[{i}/{len(jobs)}] {sut_name} {scenario} {mode} "
                   f"(elapsed {time.monotonic() - started:,.0f}s)")
        run_dir = out_root / sut_name / scenario / mode
        runs.append(sizer.run(sut_name, scenario, mode, run_dir))
        r = runs[-1]
        if mode == "performance":
            _log(args, f"    {r['metric']}: {r['value']} "
                       f"{'VALID' if r['valid'] else 'INVALID (not satisfied: ' + ', '.join(r['unmet']) + ')'}")
        else:
            _log(args, f"    top-1 {r['accuracy']:.3f}% ({r['accuracy_good']}/{r['accuracy_total']})")

    quick = not args.official
    rows = report.build_rows(runs, baseline=SUTS[0])
    payload = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "label": report.QUICK_LABEL if quick else "official MLPerf settings",
        "settings": {
            "quick": quick, "scenarios": plan["scenarios"], "modes": plan["modes"],
            "suts": plan["suts"], "model": str(inputs["model"]), "dataset": str(inputs["dataset"]),
            "synthetic_default": inputs["synthetic"], "images": len(dataset),
            "threads": args.threads or os.cpu_count(), "max_batchsize": args.max_batchsize,
            "time_s": args.time, "target_qps": args.target_qps,
            "native_engine": args.engine, "native_issue": args.issue,
            "native_knobs": {k: v for k, v in _native_knobs(args).items() if v is not None},
            "user_conf": str(args.user_conf) if args.user_conf else None,
        },
        "environment": _environment(),
        "rows": rows,
        "runs": runs,
    }
    report.write_results(out_root, payload)
    report.write_report(out_root, payload, rows)
    print(report.format_table(rows, quick=quick))
    print(f"\nresults: {out_root / 'results.json'}, report: {out_root / 'report.md'}")
    failed = [r for r in runs if r["sut_errors"]]
    if failed:
        print("fastres.bench: error: SUT errors in " + ", ".join(
            f"{r['sut']} {r['scenario']} {r['mode']} ({r['sut_errors']})" for r in failed)
            + "; these runs are not results", file=sys.stderr)
        return 1
    return 0
