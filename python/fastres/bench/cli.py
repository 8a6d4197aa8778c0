"""``python -m fastres.bench``: the head-to-head command line.

With no arguments: the embedded synthetic default, quick settings, the Offline scenario,
performance and accuracy, every SUT available. Bad input is refused before any long work
(preprocessing, model building, runs) starts.

``--scenario all`` runs both SUTs in the four scenarios; in quick runs the Server target of each
SUT is then searched (``--find-peak``, see :mod:`fastres.bench.search`), ``--sweep`` runs a grid
of native executor settings, and the report (``report.md``, ``report.html`` with plots) comes
from :mod:`fastres.bench.report`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import inspect
import os
import shlex
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from .. import loadgen as flg
from ..errors import FastresError, InvalidArgument, Unavailable
from . import report
from .progress import Progress, fmt_duration

#: SUTs in the order they run and appear in tables; the first is the baseline.
SUTS = ("reference", "native")
#: ``--preprocess`` choices: the reference (OpenCV) preprocessing or fastres.data.dali.
PREPROCESSINGS = ("reference", "dali")
DEFAULT_CACHE = Path(os.environ.get("FASTRES_CACHE", Path.home() / ".cache" / "fastres"))
#: Per-SUT wall-clock seconds the Server peak search may spend by default.
DEFAULT_SEARCH_BUDGET_S = 60.0
#: Confirming runs after the search: the found target, then at most this many steps down.
CONFIRM_RETRIES = 2
#: The reference harness's default largest batch (main.py's --max-batchsize).
REFERENCE_MAX_BATCHSIZE = 32
#: Seconds one engine call may take before the run is failed instead of hanging.
DEFAULT_WATCHDOG_S = 60.0
#: Flags only one SUT reads: giving one while that SUT does not run is a contradiction.
#: The CUDA path's knobs (LWIS's names): only for engines that run on a GPU.
CUDA_FLAGS = ("use_graphs", "start_from_device", "run_infer_on_copy_streams", "use_spin_wait",
              "devices")
NATIVE_ONLY = ("engine", "batch_size", "copy_streams", "infer_streams", "complete_threads",
               "batch_timeout_us", "deque_limit", "issue", *CUDA_FLAGS)
REFERENCE_ONLY = ("threads", "max_batchsize")
#: What --report-from may be combined with (it runs nothing).
REPORT_FROM_FLAGS = ("report_from", "no_plots", "quiet", "json")


def _devices(text: str) -> list[int]:
    try:
        devices = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CUDA device indices like 0,1, got {text!r}") from None
    if not devices or any(d < 0 for d in devices):
        raise argparse.ArgumentTypeError(f"expected CUDA device indices >= 0 like 0,1, got {text!r}")
    return devices


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


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected 0 or a positive number, got {text}")
    return value


def _fraction(text: str) -> float:
    value = _positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1 (0.05 = 5%), "
                                         f"got {text}")
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
                   help="output folder for results.json, report.md, report.html and LoadGen logs")
    p.add_argument("--user-conf", type=Path, help="LoadGen user.conf applied after mlperf.conf")
    p.add_argument("--official", action="store_true",
                   help="LoadGen's official settings (mlperf.conf; runs take 10 minutes or more "
                        "each) instead of quick ones")
    p.add_argument("--max-batchsize", type=_positive_int, default=None,
                   help="largest batch the reference harness sends to the model (default: "
                        f"{REFERENCE_MAX_BATCHSIZE})")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="reference harness worker threads (default: the number of cores)")
    p.add_argument("--watchdog-s", type=_non_negative_float, default=DEFAULT_WATCHDOG_S,
                   metavar="SECONDS",
                   help="fail a run whose engine does not answer a batch within this many "
                        "seconds, instead of hanging (0: off; default: "
                        f"{DEFAULT_WATCHDOG_S:g}): the reference SUT's watchdog thread and the "
                        "native executor's watchdog_ms")
    p.add_argument("--time", type=_positive_float,
                   help="run duration in seconds (min and max duration), as the reference's --time")
    p.add_argument("--count", type=_positive_int,
                   help="use only the first COUNT images of the dataset, as the reference's --count")
    p.add_argument("--target-qps", type=_positive_float,
                   help="Server target QPS and Offline expected QPS (turns the Server search off)")
    g = p.add_argument_group("native SUT (the executor; NVIDIA's knob names)")
    from ..sut.native import DEFAULT_ENGINE, ENGINES

    g.add_argument("--engine", default=None, choices=ENGINES,
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
    g.add_argument("--issue", default=None, choices=("fast", "objects"),
                   help="LoadGen SUT kind for the native SUT: ConstructFastSUT (fast, the "
                        "default) or ConstructSUT")
    c = p.add_argument_group("native SUT on a GPU (engines tensorrt, or torch where PyTorch sees one)")
    c.add_argument("--use-graphs", action=argparse.BooleanOptionalAction, default=None,
                   help="capture each stream slot's engine per batch size into a CUDA graph "
                        "(default: on, but in Offline)")
    c.add_argument("--start-from-device", action=argparse.BooleanOptionalAction, default=None,
                   help="keep the performance samples in device memory: contiguous batches are "
                        "bound in place, others gathered by a kernel (default: off)")
    c.add_argument("--run-infer-on-copy-streams", action=argparse.BooleanOptionalAction,
                   default=None, help="run the engine on each slot's copy stream (default: off)")
    c.add_argument("--use-spin-wait", action=argparse.BooleanOptionalAction, default=None,
                   help="completion threads spin on the output events instead of sleeping")
    c.add_argument("--devices", type=_devices, default=None, metavar="0,1",
                   help="CUDA devices; --copy-streams slots on each, batches round-robin "
                        "(default: 0)")
    p.add_argument("--input-name", default="input_tensor:0", help="the model's image input")
    p.add_argument("--output-name", default="ArgMax:0", help="the model's top-1 output")
    p.add_argument("--data-format", default="NCHW", choices=("NCHW", "NHWC"),
                   help="the model's input layout (default: NCHW, as resnet50_v1.onnx)")
    p.add_argument("--skip-missing", action="store_true",
                   help="skip images listed in val_map.txt that are missing, and report the count")
    d = p.add_argument_group("preprocessing (DALI: pip install 'fastres[dali]')")
    d.add_argument("--preprocess", default="reference", choices=PREPROCESSINGS,
                   help="what fills the preprocessed store both SUTs read: the reference "
                        "preprocessing (OpenCV, as MLPerf's reference) or the DALI pipeline "
                        "(fastres.data.dali); stores are cached apart and marked with their "
                        "producer (default: reference)")
    d.add_argument("--dali-device", choices=("cpu", "gpu"), default=None,
                   help="where DALI runs for --preprocess dali and --online (default: cpu; gpu "
                        "needs a CUDA device)")
    d.add_argument("--skip-bad", action="store_true",
                   help="skip images that cannot be decoded (corrupt, truncated, empty) and "
                        "report the count, instead of stopping at the first with its name")
    d.add_argument("--online", action="store_true",
                   help="BEYOND MLPERF: the native SUT loads raw JPEG bytes and preprocesses "
                        "each batch with DALI inside the timed run; results are labelled as "
                        "not comparable with MLPerf results")
    r = p.add_argument_group("peak search, sweeps and the report")
    r.add_argument("--find-peak", action=argparse.BooleanOptionalAction, default=None,
                   help="search each SUT's highest VALID Server target QPS, then confirm it "
                        "(default: on for quick runs that include Server performance without "
                        "--target-qps; off for --official)")
    r.add_argument("--search-budget", type=_positive_float, default=DEFAULT_SEARCH_BUDGET_S,
                   metavar="SECONDS",
                   help="wall-clock seconds the Server search may spend per SUT, confirming "
                        f"run not included (default: {DEFAULT_SEARCH_BUDGET_S:g})")
    r.add_argument("--search-precision", type=_fraction, default=0.05, metavar="FRACTION",
                   help="stop bisecting when the VALID/INVALID bracket is this close "
                        "(default: 0.05, i.e. 5%%)")
    r.add_argument("--search-time", type=_positive_float, default=1.0, metavar="SECONDS",
                   help="minimum duration of each search trial run (default: 1)")
    r.add_argument("--sweep", nargs="+", action="extend", metavar="KNOB=V1,V2",
                   help="run the native SUT over the grid of these executor knob values in "
                        "every chosen scenario, e.g. --sweep batch_size=1,8,32 copy_streams=1,2")
    r.add_argument("--latency-trace", default="auto", choices=("auto", "on", "off"),
                   help="LoadGen trace for per-query latency distributions: auto = on for "
                        "quick runs with a model, off for --official and the null engine "
                        "(the trace costs a null engine 15-45%% of its throughput)")
    r.add_argument("--audit", action="extend", nargs="+", metavar="TEST",
                   help="also run MLPerf's compliance audits for ResNet50: TEST01 (accuracy "
                        "in performance mode; needs --mode both), TEST04 (no caching of "
                        "repeated samples; needs performance), comma-separated or 'all'; "
                        "verified by the published rules, pass/fail in the report")
    r.add_argument("--no-plots", action="store_true", help="tables only in the report")
    r.add_argument("--report-from", type=Path, metavar="RESULTS_JSON",
                   help="run nothing: rebuild report.md/report.html next to this results.json")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--json", action="store_true",
                   help="progress and the final result as JSON lines on stdout (one object per "
                        "line with an 'event' key; stdout carries nothing else)")
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


def _validate(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that can be checked without doing work; raises InvalidArgument."""
    plan: dict[str, Any] = {}
    plan["scenarios"] = _split(args.scenario, flg.SCENARIOS, "scenario", flg.parse_scenario)
    plan["modes"] = ["performance", "accuracy"] if args.mode == "both" else [args.mode]
    plan["suts"] = _split(args.sut, SUTS, "sut")
    _validate_preprocessing(args, plan)
    if args.user_conf is not None and not args.user_conf.is_file():
        raise InvalidArgument(f"--user-conf {args.user_conf}: file not found")
    if args.official and (args.time is not None):
        raise InvalidArgument("--official takes its durations from LoadGen's mlperf.conf; "
                              "drop --time (or drop --official for a quick run)")
    for scenario in plan["scenarios"]:  # the user.conf and the settings, before any work
        for mode in plan["modes"]:
            flg.make_settings(scenario, mode, **_settings_kwargs(args))
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
    _check_one_sut_flags(args, plan)
    plan["find_peak"], plan["find_peak_why_off"] = _resolve_find_peak(args, plan)
    _check_search_flags(args, plan)
    plan["sweep"] = _validate_sweep(args, plan)
    plan["audits"] = _validate_audits(args, plan)
    _resolve_defaults(args)
    if "native" in plan["suts"]:
        from ..sut.native import engine_device

        if args.engine == "tensorrt":  # fail before any work when TensorRT is missing
            from ..engines.tensorrt import check_available

            check_available()
        for knob in ("batch_timeout_us", "deque_limit"):
            if getattr(args, knob) is not None and getattr(args, knob) < 0:
                raise InvalidArgument(f"--{knob.replace('_', '-')} must be >= 0, got {getattr(args, knob)}")
        cuda_given = [d for d in CUDA_FLAGS if getattr(args, d) is not None]
        if cuda_given and engine_device(args.engine) != "cuda":
            raise InvalidArgument(
                f"{_flags(cuda_given)} {'sets' if len(cuda_given) == 1 else 'set'} the CUDA path, "
                f"but --engine {args.engine} runs on the CPU here; drop "
                f"{'it' if len(cuda_given) == 1 else 'them'} or use a GPU engine (tensorrt, or "
                "torch with a CUDA build of PyTorch on a GPU machine)")
        for scenario in plan["scenarios"]:
            _check_config(_native_config(args, scenario), engine_device(args.engine))
    if args.model is not None:
        from ..model import check_model
        check_model(args.model, args.input_name, args.output_name, args.data_format)
    return plan


def _validate_preprocessing(args: argparse.Namespace, plan: dict[str, Any]) -> None:
    """--preprocess, --dali-device and --online, before any work: DALI installed, a GPU where
    one is asked for, and online mode only for the native SUT."""
    uses_dali = args.preprocess == "dali" or args.online
    if args.dali_device is not None and not uses_dali:
        raise InvalidArgument("--dali-device chooses where DALI runs: add --preprocess dali or "
                              "--online, or drop it")
    args.dali_device = args.dali_device or "cpu"
    if args.online and "native" not in plan["suts"]:
        raise InvalidArgument("--online is a mode of the native SUT; include native in --sut")
    if not uses_dali:
        return
    from ..data import dali as fd

    flag = "--preprocess dali" if args.preprocess == "dali" else "--online"
    if not fd.dali_available():
        raise Unavailable(f"{flag} needs NVIDIA DALI, which is not installed; install it with "
                          f"{fd.INSTALL_HINT}, or use --preprocess reference without --online")
    if args.dali_device == "gpu":
        if fd.cuda_device_count() == 0:
            raise Unavailable("--dali-device gpu: no CUDA device or driver on this machine; "
                              "use --dali-device cpu")
        if args.online:
            from .. import _core

            if not _core.build_info()["with_cuda"]:
                raise Unavailable("--online --dali-device gpu hands DALI's device output to a "
                                  "CUDA engine through the executor's CUDA path, which this "
                                  "fastres build does not have; use --dali-device cpu")


def _build_store(args: argparse.Namespace, dataset: Any, progress: Progress) -> Any:
    """The fp32 store both SUTs read, made by --preprocess, with --skip-bad applied; a bad
    image without --skip-bad is an error naming the file."""
    from ..errors import DataError

    quiet = args.quiet or args.json
    try:
        if args.preprocess == "dali":
            from ..data.dali import build_dali_store

            store = build_dali_store(dataset, "fp32", args.cache_dir, device=args.dali_device,
                                     quiet=quiet, skip_bad=args.skip_bad)
        else:
            from ..data.store import build_store

            store = build_store(dataset, "fp32", args.cache_dir, quiet=quiet,
                                skip_bad=args.skip_bad)
    except DataError as exc:
        if args.skip_bad or "skip-bad" in str(exc):
            raise
        raise DataError(f"{exc} (or pass --skip-bad to skip bad images)") from None
    if store.skipped_bad:
        first = store.skipped_bad[0]
        progress.say(f"fastres.bench: {len(store.skipped_bad)} bad image(s) skipped (--skip-bad), "
                     f"first {first['file']}: {first['reason']}")
    return store


def _preprocessing_info(args: argparse.Namespace, store: Any) -> dict[str, Any]:
    """What results.json and the report say about the data: which preprocessing made the store,
    what it left out, and the online mode."""
    from ..sut.online import ONLINE_LABEL

    return {
        "preprocess": args.preprocess, "producer": store.producer,
        "producer_info": store.index.get("producer_info"), "store": str(store.path),
        "skip_bad": args.skip_bad, "skipped_bad": len(store.skipped_bad),
        "skipped_bad_files": [s["file"] for s in store.skipped_bad[:20]],
        "online": {"suts": ["native"], "dali_device": args.dali_device,
                   "label": ONLINE_LABEL} if args.online else None,
    }




def _flags(dests: list[str] | tuple[str, ...]) -> str:
    return ", ".join("--" + d.replace("_", "-") for d in dests)


def _check_one_sut_flags(args: argparse.Namespace, plan: dict[str, Any]) -> None:
    """A flag that only one SUT reads, given while that SUT does not run, would be silently
    ignored: refuse it."""
    for sut, dests in (("native", NATIVE_ONLY), ("reference", REFERENCE_ONLY)):
        given = [d for d in dests if getattr(args, d, None) is not None]
        if given and sut not in plan["suts"]:
            raise InvalidArgument(
                f"{_flags(given)} {'sets' if len(given) == 1 else 'set'} the {sut} SUT, which "
                f"--sut {args.sut} does not run; drop {'it' if len(given) == 1 else 'them'} or "
                f"add {sut} to --sut")


def _check_search_flags(args: argparse.Namespace, plan: dict[str, Any]) -> None:
    defaults = {"search_budget": DEFAULT_SEARCH_BUDGET_S, "search_precision": 0.05,
                "search_time": 1.0}
    given = [d for d, v in defaults.items() if getattr(args, d) != v]
    if given and not plan["find_peak"]:
        raise InvalidArgument(
            f"{_flags(given)} only affect{'s' if len(given) == 1 else ''} the Server peak "
            f"search, which is off ({plan['find_peak_why_off']}); drop "
            f"{'it' if len(given) == 1 else 'them'} or pass --find-peak")


def _validate_audits(args: argparse.Namespace, plan: dict[str, Any]) -> list[str]:
    from .audit import parse_audits

    audits = parse_audits(args.audit)
    if "TEST01" in audits and plan["modes"] != ["performance", "accuracy"]:
        raise InvalidArgument("--audit TEST01 compares the audit run with the performance run "
                              "and the accuracy run: use --mode both (the default)")
    if "TEST04" in audits and "performance" not in plan["modes"]:
        raise InvalidArgument("--audit TEST04 compares the audit run with the performance run: "
                              "use --mode performance or both")
    return audits


def _resolve_defaults(args: argparse.Namespace) -> None:
    """Defaults of the one-SUT flags, filled in once they have been checked."""
    from ..sut.native import DEFAULT_ENGINE

    args.engine = args.engine or DEFAULT_ENGINE
    args.issue = args.issue or "fast"
    args.max_batchsize = args.max_batchsize or REFERENCE_MAX_BATCHSIZE


def _check_report_from_alone(args: argparse.Namespace) -> None:
    """--report-from runs nothing, so any run flag with it is a contradiction."""
    defaults = vars(build_parser().parse_args([]))
    given = [d for d, v in vars(args).items()
             if d in defaults and d not in REPORT_FROM_FLAGS and v != defaults[d]]
    if given:
        raise InvalidArgument(f"--report-from runs nothing (it rebuilds the reports from a "
                              f"results.json), so {_flags(given)} would be ignored; drop "
                              f"{'it' if len(given) == 1 else 'them'}, or drop --report-from "
                              "to run")


def _check_config(config: Any, device: str = "cpu") -> None:
    from .. import _core
    from ..sut.native import DEFAULT_KNOBS, check_buffers

    if device == "cuda":  # the CPU null engine refuses CUDA knobs: check the others on it
        config = _core.ExecutorConfig(watchdog_ms=int(config.watchdog_ms),
                                      **{k: int(getattr(config, k)) for k in DEFAULT_KNOBS})
    config.validate(_core.NullEngine(max_batch=int(config.batch_size)))
    check_buffers(config, 3 * 224 * 224 * 4)


def _resolve_find_peak(args: argparse.Namespace, plan: dict[str, Any]) -> tuple[bool, str | None]:
    """Whether the Server search runs, and if not, why (for the report)."""
    server_perf = "Server" in plan["scenarios"] and "performance" in plan["modes"]
    if args.find_peak:
        if not server_perf:
            raise InvalidArgument("--find-peak searches the Server target QPS; include Server "
                                  "in --scenario (or 'all') and performance in --mode")
        if args.target_qps is not None:
            raise InvalidArgument("--find-peak finds each SUT's Server target itself; drop "
                                  "--target-qps, or pass --no-find-peak to run at that target")
        return True, None
    if args.find_peak is False:
        return False, "--no-find-peak"
    if not server_perf:
        return False, "no Server performance run"
    if args.target_qps is not None:
        return False, "--target-qps given"
    if args.official:
        return False, "off by default with --official; pass --find-peak"
    return True, None


def _validate_sweep(args: argparse.Namespace, plan: dict[str, Any]) -> dict[str, list[int]]:
    if not args.sweep:
        return {}
    from ..sut.native import DEFAULT_KNOBS, engine_device
    from .sweep import grid, parse_sweep, setting_label

    if "native" not in plan["suts"]:
        raise InvalidArgument("--sweep varies the native SUT's executor knobs; include native "
                              "in --sut")
    if "performance" not in plan["modes"]:
        raise InvalidArgument("--sweep compares performance runs; use --mode performance or both")
    spec = parse_sweep(args.sweep, tuple(DEFAULT_KNOBS))
    for knob in spec:
        if getattr(args, knob, None) is not None:
            raise InvalidArgument(f"--sweep varies {knob} and --{knob.replace('_', '-')} sets it; "
                                  "give it one way")
    for setting in grid(spec):
        for scenario in plan["scenarios"]:
            try:
                _check_config(_native_config(args, scenario, **setting),
                              engine_device(args.engine))
            except InvalidArgument as exc:
                raise InvalidArgument(f"--sweep setting {setting_label(setting)} in {scenario}: "
                                      f"{exc}") from None
    return spec


def _environment() -> dict[str, Any]:
    from .environment import capture

    return capture()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = "python -m fastres.bench " + shlex.join(
        sys.argv[1:] if argv is None else [str(a) for a in argv])
    progress = Progress("json" if args.json else "quiet" if args.quiet else "human")
    try:
        return _main(args, progress)
    except FastresError as exc:
        progress.emit("error", message=str(exc))
        print(f"fastres.bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        progress.emit("error", message="interrupted")
        print("fastres.bench: interrupted", file=sys.stderr)
        return 130
    finally:
        progress.close()


def _resolve_inputs(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """The model and dataset to run: the user's, or the embedded synthetic default."""
    chosen: dict[str, Any] = {"model": args.model, "dataset": args.dataset_path,
                              "val_map": args.val_map, "synthetic": False}
    if args.model is None or args.dataset_path is None:
        from ..data.synthetic import make_default

        progress.say("fastres.bench: preparing the embedded synthetic default "
                     "(built once, then cached)")
        default = make_default(args.cache_dir / "synthetic", quiet=args.quiet or args.json)
        chosen["synthetic"] = True
        if args.model is None:
            chosen["model"] = default.model_path
            from ..model import check_model
            check_model(default.model_path, args.input_name, args.output_name, args.data_format)
        if args.dataset_path is None:
            chosen["dataset"] = default.dataset_dir
            chosen["val_map"] = default.val_map
        if (args.model is None) != (args.dataset_path is None):
            progress.say("fastres.bench: warning: mixing a given "
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


def _throughput(scenario: str, summary: flg.Summary) -> tuple[float | None, str]:
    """Samples/s of a performance run, and where the figure comes from."""
    if scenario in ("Offline", "Server"):
        return summary.value, summary.metric or ""
    if scenario == "SingleStream":
        raw = summary.raw.get("QPS w/ loadgen overhead")
        try:
            return float(raw), "QPS w/ loadgen overhead"
        except (TypeError, ValueError):
            pass
    mean = summary.latencies_ns.get("mean")
    try:
        spq = int(summary.test_parameters.get("samples_per_query", 1))
    except ValueError:
        spq = 1
    if mean:
        return spq / (mean / 1e9), f"{spq} sample{'s' if spq > 1 else ''}/query ÷ mean latency"
    return None, ""


def _run_test(sut: Any, settings: Any, out_dir: Path, enable_trace: bool,
              audit: str | None) -> flg.RunResult:
    if audit is None:
        return flg.run_test(sut.sut, sut.qsl, settings, out_dir, enable_trace=enable_trace)
    from .audit import run_audit

    return run_audit(audit, sut.sut, sut.qsl, settings, out_dir, enable_trace=enable_trace)


def _failure(sut_failure: str | None, responses: flg.ResponseAccount | None) -> str | None:
    """Why a finished run is not a result: the SUT's own account (engine errors, a hang, a
    stop) or LoadGen's logs disagreeing with "every response exactly once". (Errors LoadGen
    logs about the test itself, e.g. "Max test duration reached", make it INVALID, which
    LoadGen's verdict already says.)"""
    if sut_failure:
        return sut_failure
    if responses is not None and not responses.ok:
        return (f"LoadGen's logs show {responses.duplicates} duplicate, "
                f"{responses.missing or 0} missing and {responses.foreign} unknown responses "
                f"of {responses.issued} issued")
    return None


#: SUT response types, for reading LoadGen's accuracy log: the reference answers float32 (as
#: MLPerf's reference), the native SUT int32.
RESPONSE_DTYPE = {"reference": "float32", "native": "int32"}


def _run_one(sut_name: str, args: argparse.Namespace, model: Path, store: Any, scenario: str,
             mode: str, out_dir: Path, *, knobs: dict[str, int] | None = None,
             enable_trace: bool = False, audit: str | None = None,
             **overrides: Any) -> dict[str, Any]:
    """One LoadGen test of one SUT; ``knobs`` override the native SUT's executor knobs,
    ``overrides`` the LoadGen settings (``make_settings`` keywords), ``audit`` makes it that
    compliance audit's run (:mod:`fastres.bench.audit`)."""
    from ..sut.native import config_dict

    began = time.monotonic()
    kw = _settings_kwargs(args)
    kw.update(overrides)
    settings = flg.make_settings(scenario, mode, **kw)
    config = None
    online = None
    if sut_name == "native" and args.online:
        from ..sut.online import OnlineSUT

        engine, config, online = _online_engine(args, model, store, scenario, knobs)
        online.reset_stats()
        with OnlineSUT(engine, online.samples, scenario=scenario, config=config,
                       issue=args.issue) as sut:
            result = _run_test(sut, settings, out_dir, enable_trace, audit)
            sut_errors, sut_failure, last_error = sut.errors, sut.failure, sut.last_error
        online = online.stats()
    elif sut_name == "native":
        from ..sut.native import NativeSUT

        engine, config = _native_engine(args, model, store, scenario, knobs)
        with NativeSUT(engine, store, scenario=scenario, config=config, issue=args.issue) as sut:
            result = _run_test(sut, settings, out_dir, enable_trace, audit)
            sut_errors, sut_failure = sut.errors, sut.failure
    elif sut_name == "reference":
        from ..sut.reference import ReferenceSUT

        with ReferenceSUT(model, store, scenario=scenario, threads=args.threads,
                          max_batchsize=args.max_batchsize, data_format=args.data_format,
                          input_name=args.input_name, output_name=args.output_name,
                          watchdog_s=args.watchdog_s or None) as sut:
            result = _run_test(sut, settings, out_dir, enable_trace, audit)
            sut_errors, sut_failure = sut.errors, sut.failure
    else:  # pragma: no cover - guarded by _validate
        raise InvalidArgument(f"unknown SUT {sut_name!r}")
    responses = None
    if (out_dir / "mlperf_log_accuracy.json").is_file():
        responses = flg.account_responses(out_dir)
    failed = _failure(sut_failure, responses)
    acc = None
    if mode == "accuracy":
        acc = flg.accuracy_from_log(out_dir / "mlperf_log_accuracy.json", store.labels,
                                    dtype=RESPONSE_DTYPE[sut_name])
    distribution = None
    if enable_trace and mode == "performance":
        from .latency import distribution as summarise, read_trace_latencies

        lat = read_trace_latencies(out_dir / "mlperf_log_trace.json",
                                   per_query=scenario == "MultiStream")
        if lat is not None:
            distribution = {"source": "mlperf_log_trace.json",
                            "per": "query" if scenario == "MultiStream" else "sample",
                            **summarise(lat)}
    perf = mode == "performance"
    throughput, basis = _throughput(scenario, result.summary) if perf else (None, "")
    return {
        "sut": sut_name, "scenario": scenario, "mode": mode, "kind": "run",
        "metric": result.metric, "value": result.value,
        "valid": result.valid if perf else None,
        "unmet": result.summary.unmet if perf else [],
        "latencies_ns": result.summary.latencies_ns,
        "throughput": throughput, "throughput_basis": basis,
        "target_qps": (settings.server_target_qps if scenario == "Server"
                       else settings.offline_expected_qps if scenario == "Offline" else None),
        "target_latency_ns": settings.server_target_latency_ns if scenario == "Server" else None,
        "latency_distribution": distribution,
        "accuracy": acc.accuracy if acc else None,
        "accuracy_good": acc.good if acc else None,
        "accuracy_total": acc.total if acc else None,
        "sut_errors": sut_errors,
        "failed": failed,
        "responses": responses.as_dict() if responses is not None else None,
        "audit": audit,
        "label": result.label, "quick": result.quick,
        "settings": {k: v for k, v in overrides.items()},
        "native_config": config_dict(config) if config is not None else None,
        "test_parameters": result.summary.test_parameters,
        "wall_s": round(result.wall_s, 3), "took_s": round(time.monotonic() - began, 3),
        "log_dir": str(out_dir),
        **({"online": online, "label": f"{result.label}; {online['label']}",
            "sut_last_error": last_error} if online is not None else {}),
    }


_ENGINES: dict[tuple, tuple[Any, Any]] = {}


def _native_knobs(args: argparse.Namespace) -> dict[str, Any]:
    knobs = {"batch_size": args.batch_size, "copy_streams": args.copy_streams,
             "infer_streams": args.infer_streams, "complete_threads": args.complete_threads,
             "batch_timeout_us": args.batch_timeout_us, "deque_limit": args.deque_limit}
    knobs.update({k: getattr(args, k, None) for k in CUDA_FLAGS})
    return knobs


def _native_config(args: argparse.Namespace, scenario: str, **knobs: Any) -> Any:
    """The executor's config for a scenario: the engine's device's defaults, the flags, then
    ``knobs`` (a sweep setting), with the reference SUT's watchdog limit (0: off for both)."""
    from ..sut.native import engine_device, make_config

    config = make_config(scenario, device=engine_device(args.engine), **{**_native_knobs(args), **knobs})
    config.watchdog_ms = int(round((getattr(args, "watchdog_s", 0) or 0) * 1000))
    return config


def _native_engine(args: argparse.Namespace, model: Path, store: Any, scenario: str,
                   knobs: dict[str, int] | None = None) -> tuple[Any, Any]:
    """The native engine and config for a scenario, built once per invocation and setting
    (ONNX Runtime sessions take seconds to create) and shared by the runs."""
    from ..sut.native import make_engine

    config = _native_config(args, scenario, **(knobs or {}))
    key = (args.engine, str(model), repr(config))
    if key not in _ENGINES:
        extra: dict[str, Any] = {}
        if "quiet" in inspect.signature(make_engine).parameters:  # engines that build models
            extra["quiet"] = bool(args.quiet or args.json)
        engine = make_engine(args.engine, store, config, model=model,
                             input_name=args.input_name, output_name=args.output_name, **extra)
        _ENGINES[key] = (engine, config)
    return _ENGINES[key]


_ONLINE: dict[tuple, tuple[Any, Any, Any]] = {}


def _online_engine(args: argparse.Namespace, model: Path, store: Any, scenario: str,
                   knobs: dict[str, int] | None = None) -> tuple[Any, Any, Any]:
    """The online native engine (DALI preprocessing + the --engine callable), its config and
    its OnlineEngine, built once per invocation and setting, over the store's images."""
    from ..sut.native import engine_fn, make_config
    from ..sut.online import EncodedSamples, make_online_engine

    config = make_config(scenario, **{**_native_knobs(args), **(knobs or {})})
    key = (args.engine, str(model), repr(config))
    if key not in _ONLINE:
        inner = engine_fn(args.engine, store, config, model=model, input_name=args.input_name,
                          output_name=args.output_name, quiet=bool(args.quiet or args.json))
        engine, online = make_online_engine(inner, EncodedSamples.from_store(store), config,
                                            device=args.dali_device, skip_bad=args.skip_bad)
        _ONLINE[key] = (engine, config, online)
    return _ONLINE[key]


class _QuickSizer:
    """Runs one SUT/scenario/mode with settings sized to the SUT in front of it, since one fixed
    target cannot fit both a CPU ResNet50 (tens of samples/s) and a harness with a null engine
    (hundreds of thousands), and reports each run to the progress display:

    - Offline: LoadGen issues ``expected_qps × min_duration`` samples; a SUT faster than that
      ends early and is INVALID ("Min duration satisfied: NO"), so such a run is repeated once
      with the expected QPS set from what it measured.
    - Server: the target QPS is given (the peak search's), or half the SUT's Offline
      throughput (measured in this invocation, or by a short Offline probe); the maximum
      duration leaves room for the minimum query count at that rate.
    - Server accuracy runs issue at the SUT's Offline throughput when it is known (latency
      does not count in accuracy mode), else at the quick default.
    """

    def __init__(self, args: argparse.Namespace, model: Path, store: Any, out_root: Path,
                 progress: Progress | None = None) -> None:
        self.args, self.model, self.store, self.out_root = args, model, store, out_root
        self.progress = progress or Progress("quiet")
        self.capacity: dict[str, float] = {}
        self.server_target: dict[str, float] = {}
        self._overhead: dict[str, float] = {}

    def enabled(self) -> bool:
        return not self.args.official and self.args.target_qps is None

    # ---- time estimates for the progress display
    def overhead_s(self, sut_name: str) -> float:
        """Seconds a run costs beyond LoadGen's own time (SUT set-up, loading samples)."""
        return self._overhead.get(sut_name, 1.5)

    def expected_s(self, sut_name: str, scenario: str, mode: str,
                   target: float | None = None) -> float:
        a = self.args
        cap = self.capacity.get(sut_name)
        if mode == "accuracy":
            n = len(self.store)
            if scenario == "Server":
                rate = (target or a.target_qps or max(cap or 0.0,
                                                      flg.QUICK_DEFAULTS["Server"]["target_qps"]))
            else:
                rate = cap or 200.0
            return n / rate + self.overhead_s(sut_name)
        if a.official:
            return flg.OFFICIAL_MIN_DURATION_MS / 1000 * 1.05 + self.overhead_s(sut_name)
        duration = a.time or flg.QUICK_MIN_DURATION_MS / 1000
        if a.time is not None:  # LoadGen's maximum duration too
            return duration + self.overhead_s(sut_name)
        if scenario == "Server":
            target = target or self.server_target.get(sut_name) or a.target_qps or (
                0.5 * cap if cap else None)
            if target:
                duration = max(duration, flg.QUICK_DEFAULTS["Server"]["min_query_count"] / target)
        elif scenario == "MultiStream" and cap:
            duration = max(duration, flg.QUICK_DEFAULTS["MultiStream"]["min_query_count"] * 8 / cap)
        # quick runs stop at their maximum duration (Server's is sized up to a minute)
        duration = min(duration, 60.0 if scenario == "Server" else flg.QUICK_MAX_DURATION_MS / 1000)
        return duration + self.overhead_s(sut_name)

    # ---- runs
    def run(self, sut_name: str, scenario: str, mode: str, run_dir: Path, *, kind: str = "run",
            knobs: dict[str, int] | None = None, enable_trace: bool = False,
            note: str = "", audit: str | None = None, **overrides: Any) -> dict[str, Any]:
        if scenario == "Server":
            self._size_server(sut_name, mode, overrides)
        target = overrides.get("target_qps")
        self.progress.run_start(kind=kind, sut=sut_name, scenario=scenario, mode=mode, note=note,
                                expected_s=self.expected_s(sut_name, scenario, mode, target))
        r = self._run(sut_name, scenario, mode, run_dir, kind, knobs, enable_trace, overrides,
                      audit)
        # A short first run can underestimate a SUT that is still warming up, so the rerun
        # (at twice the measured rate) may be repeated, at most three times in all.
        for _ in range(3):
            if not (self.enabled() and scenario == "Offline" and mode == "performance"
                    and audit is None and not r["valid"] and "Min duration satisfied" in r["unmet"] and r["value"]):
                break
            self.progress.run_end(r, kind=kind, took_s=r["took_s"])
            self.progress.add([self.expected_s(sut_name, scenario, mode)])
            self.progress.run_start(kind=kind, sut=sut_name, scenario=scenario, mode=mode,
                                    note=f"rerun: finished before the minimum duration; "
                                         f"expected QPS {2 * r['value']:,.0f}",
                                    expected_s=self.expected_s(sut_name, scenario, mode))
            overrides = {**overrides, "target_qps": round(2 * r["value"], 2)}
            r = self._run(sut_name, scenario, mode, run_dir, kind, knobs, enable_trace, overrides)
        if scenario == "Offline" and mode == "performance" and r["value"] and knobs is None \
                and audit is None and not r["failed"]:
            self.capacity[sut_name] = r["value"]
        if scenario == "Server" and mode == "performance" and kind == "run" and r["target_qps"]:
            self.server_target[sut_name] = r["target_qps"]
        self.progress.run_end(r, kind=kind, took_s=r["took_s"])
        return r

    def _run(self, sut_name: str, scenario: str, mode: str, run_dir: Path, kind: str,
             knobs: dict[str, int] | None, enable_trace: bool,
             overrides: dict[str, Any], audit: str | None = None) -> dict[str, Any]:
        r = _run_one(sut_name, self.args, self.model, self.store, scenario, mode, run_dir,
                     knobs=knobs, enable_trace=enable_trace, audit=audit, **overrides)
        r["kind"] = kind
        if knobs:
            r["knobs"] = dict(knobs)
        spent = max(0.0, r["took_s"] - r["wall_s"])
        old = self._overhead.get(sut_name)
        self._overhead[sut_name] = spent if old is None else 0.5 * (old + spent)
        return r

    def _size_server(self, sut_name: str, mode: str, overrides: dict[str, Any]) -> None:
        target = overrides.get("target_qps")
        if target is None and self.enabled():
            if mode == "accuracy" and sut_name in self.capacity:
                # Latency does not count in accuracy mode: issue as fast as the SUT can answer.
                target = round(max(flg.QUICK_DEFAULTS["Server"]["target_qps"],
                                   self.capacity[sut_name]), 2)
            elif mode == "performance":
                target = max(1.0, round(0.5 * self._capacity(sut_name), 2))
            if target is not None:
                overrides["target_qps"] = target
        if (mode == "performance" and target is not None and self.args.time is None
                and not self.args.official and "max_duration_ms" not in overrides):
            # Room for the minimum query count, but a quick run stays under a minute: a
            # SUT too slow for that is INVALID ("Min queries satisfied: NO"), as it should.
            min_queries = overrides.get("min_query_count",
                                        flg.QUICK_DEFAULTS["Server"]["min_query_count"])
            overrides["max_duration_ms"] = min(60_000, max(flg.QUICK_MAX_DURATION_MS,
                                                           int(1500 * min_queries / target)))

    def _capacity(self, sut_name: str) -> float:
        if sut_name not in self.capacity:
            self.progress.add([self.expected_s(sut_name, "Offline", "performance")])
            self.run(sut_name, "Offline", "performance",
                     self.out_root / sut_name / "probe" / "Offline", kind="probe",
                     note="measuring the Offline throughput that sizes the Server target")
        return self.capacity[sut_name]


# --------------------------------------------------------------------------------------------
# the Server peak search


def _server_peak(sizer: _QuickSizer, sut_name: str,
                 trace: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Search ``sut_name``'s highest VALID Server target, then confirm it with the Server
    performance run. Returns (that run, the search's account for results.json)."""
    from .search import Trial, find_peak, nice, server_trial_settings

    args = sizer.args
    start = sizer._capacity(sut_name)
    min_queries = int(flg.QUICK_DEFAULTS["Server"]["min_query_count"])
    search_dir = sizer.out_root / sut_name / "Server" / "search"
    trials_run: list[dict[str, Any]] = []

    def expected(q: float) -> float:
        return max(args.search_time, min_queries / q) + sizer.overhead_s(sut_name)

    def as_trial(r: dict[str, Any], q: float) -> Trial:
        return Trial(load=q, ok=bool(r["valid"]) and not r["failed"], value=r["value"],
                     p99_ns=(r["latencies_ns"] or {}).get("p99"), wall_s=r["took_s"],
                     unmet=list(r["unmet"]), log_dir=r["log_dir"])

    def trial(q: float) -> Trial:
        n = len(trials_run) + 1
        sizer.progress.add([expected(q)])
        r = sizer.run(sut_name, "Server", "performance", search_dir / f"trial-{n:02d}",
                      kind="trial", note=f"search trial {n}: target {q:,.6g} QPS",
                      **server_trial_settings(q, args.search_time, min_queries))
        trials_run.append(r)
        return as_trial(r, q)

    sizer.progress.say(f"    {sut_name}: searching the highest VALID Server target from its "
                       f"Offline {start:,.1f} samples/s (budget {args.search_budget:g} s)")
    found = find_peak(trial, start, precision=args.search_precision, budget_s=args.search_budget,
                      expected_s=expected)
    confirm: list[Trial] = []
    run_dir = sizer.out_root / sut_name / "Server" / "performance"
    if found.peak is None:
        sizer.progress.say(f"    {sut_name}: no VALID Server target found "
                           f"({found.stopped}); running at the default target")
        r = sizer.run(sut_name, "Server", "performance", run_dir, enable_trace=trace)
    else:
        q = found.peak
        for attempt in range(CONFIRM_RETRIES + 1):
            r = sizer.run(sut_name, "Server", "performance", run_dir, enable_trace=trace,
                          note=f"confirming run at {q:,.6g} QPS", target_qps=q)
            confirm.append(as_trial(r, q))
            if confirm[-1].ok or attempt == CONFIRM_RETRIES:
                break
            q = nice(q * (1 - args.search_precision), 4)
            sizer.progress.add([sizer.expected_s(sut_name, "Server", "performance", q)])
    confirmed = bool(confirm and confirm[-1].ok)
    info = {
        "peak": confirm[-1].load if confirmed else found.peak,
        "confirmed": confirmed,
        "search": found.as_dict(),
        "confirm": [c.as_dict() for c in confirm],
        "target_latency_ns": r.get("target_latency_ns"),
    }
    sizer.progress.emit("search", sut=sut_name, scenario="Server", peak=info["peak"],
                        confirmed=confirmed, trials=found.runs, stopped=found.stopped,
                        elapsed_s=round(found.elapsed_s, 1))
    sizer.progress.say(f"    {sut_name}: Server peak {_peak_text(info)}; {found.runs} trials in "
                       f"{found.elapsed_s:.0f} s, stopped by {found.stopped}")
    return r, info


def _peak_text(info: dict[str, Any]) -> str:
    if not info.get("peak"):
        return "no VALID target found"
    return (f"{info['peak']:,.6g} QPS "
            f"({'confirmed VALID' if info['confirmed'] else 'NOT confirmed by the full run'})")


# --------------------------------------------------------------------------------------------
# sweeps


def _run_sweep(sizer: _QuickSizer, plan: dict[str, Any], order: list[str]) -> dict[str, Any]:
    from .sweep import grid, pick_best, setting_dirname, setting_label

    settings = grid(plan["sweep"])
    out: dict[str, Any] = {"spec": plan["sweep"], "scenarios": {}}
    for scenario in order:
        results = []
        overrides: dict[str, Any] = {}
        if scenario == "Server":
            target = sizer.server_target.get("native") or sizer.args.target_qps
            if target:
                overrides["target_qps"] = target
        elif scenario == "Offline" and sizer.enabled() and "native" in sizer.capacity:
            overrides["target_qps"] = round(1.5 * sizer.capacity["native"], 2)
        for setting in settings:
            run_dir = sizer.out_root / "native" / "sweep" / scenario / setting_dirname(setting)
            r = sizer.run("native", scenario, "performance", run_dir, kind="sweep", knobs=setting,
                          note=setting_label(setting), **dict(overrides))
            r["setting"] = setting
            r["setting_label"] = setting_label(setting)
            results.append(r)
            _forget_engine(sizer.args, sizer.model, scenario, setting)
        best = pick_best(results, scenario)
        out["scenarios"][scenario] = {"results": results, "best": best,
                                      "target_qps": overrides.get("target_qps")
                                      if scenario == "Server" else None}
        if best is not None:
            sizer.progress.say(f"    sweep {scenario}: best {results[best]['setting_label']}")
    return out


def _forget_engine(args: argparse.Namespace, model: Path, scenario: str,
                   setting: dict[str, int]) -> None:
    """Drop a sweep setting's engine (its sessions hold memory) unless a main run uses it."""
    config = _native_config(args, scenario, **setting)
    main = _native_config(args, scenario)
    if repr(config) != repr(main):
        _ENGINES.pop((args.engine, str(model), repr(config)), None)
        _ONLINE.pop((args.engine, str(model), repr(config)), None)


# --------------------------------------------------------------------------------------------
# the whole invocation


def _trace_policy(args: argparse.Namespace, sut_name: str) -> bool:
    if args.latency_trace == "on":
        return True
    if args.latency_trace == "off" or args.official:
        return False
    return not (sut_name == "native" and args.engine == "null")


def _execution_order(scenarios: list[str]) -> list[str]:
    """Offline first: its throughput sizes the Server target and starts the peak search."""
    return sorted(scenarios, key=lambda s: (s != "Offline", flg.SCENARIOS.index(s)))


def _estimate(sizer: _QuickSizer, sut: str, scenario: str, mode: str,
              extra_s: float = 0.0) -> Callable[[], float]:
    """A run's expected duration, re-estimated whenever asked (SUT throughputs get measured)."""
    return lambda: extra_s + sizer.expected_s(sut, scenario, mode)


def _report_from(args: argparse.Namespace, progress: Progress) -> int:
    import json

    path = args.report_from
    if path.is_dir():
        path = path / "results.json"
    try:
        payload = json.loads(path.read_text())
    except OSError as exc:
        raise InvalidArgument(f"--report-from {path}: cannot read it ({exc.strerror or exc})") \
            from None
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"--report-from {path}: not JSON ({exc})") from None
    if not isinstance(payload, dict) or "settings" not in payload or "runs" not in payload:
        raise InvalidArgument(f"--report-from {path}: not a fastres results.json")
    md = report.write_report(path.parent, payload, plots=not args.no_plots)
    progress.emit("done", results=str(path), report_md=str(md),
                  report_html=str(path.parent / "report.html"), rc=0)
    if not args.json:
        print(f"report: {md}, {path.parent / 'report.html'}")
    return 0


def _main(args: argparse.Namespace, progress: Progress | None = None) -> int:
    progress = progress or Progress("quiet" if args.quiet else "human")
    if args.report_from is not None:
        _check_report_from_alone(args)
        return _report_from(args, progress)
    plan = _validate(args)
    out_root = flg.prepare_output_dir(args.output)
    inputs = _resolve_inputs(args, progress)

    from ..data.imagenet import ImagenetDataset

    dataset = ImagenetDataset(inputs["dataset"], inputs["val_map"], skip_missing=args.skip_missing,
                              count=args.count)
    if dataset.skipped:
        progress.say(f"fastres.bench: {dataset.skipped} images listed in val_map.txt are missing "
                     "and were skipped (--skip-missing)")
    store = _build_store(args, dataset, progress)

    sizer = _QuickSizer(args, Path(inputs["model"]), store, out_root, progress)
    order = _execution_order(plan["scenarios"])
    jobs = [(sut, sc, m) for sc in order for sut in plan["suts"] for m in plan["modes"]]
    from .sweep import grid

    settings = grid(plan["sweep"])
    n_sweep = len(settings) * len(order)
    # a search is planned as one entry (its budget); the trials add their own as they come
    expected = [_estimate(sizer, s, sc, m, args.search_budget
                          if (plan["find_peak"] and sc == "Server" and m == "performance") else 0.0)
                for s, sc, m in jobs]
    expected += [_estimate(sizer, "native", sc, "performance") for sc in order for _ in settings]
    expected += [_estimate(sizer, s, sc, "performance") for _ in plan["audits"]
                 for s in plan["suts"] for sc in order]
    progress.plan(expected, output=str(out_root), scenarios=order, suts=plan["suts"],
                  modes=plan["modes"], find_peak=plan["find_peak"], sweep_settings=n_sweep,
                  audits=plan["audits"])

    state: dict[str, Any] = {"runs": [], "peaks": {}, "sweep": None, "audits": []}

    def payload(complete: bool, error: str | None = None) -> dict[str, Any]:
        return _payload(args, plan, inputs, dataset, store, out_root, state, complete, error)

    try:
        for sut_name, scenario, mode in jobs:
            run_dir = out_root / sut_name / scenario / mode
            trace = mode == "performance" and _trace_policy(args, sut_name)
            if plan["find_peak"] and scenario == "Server" and mode == "performance":
                r, state["peaks"][sut_name] = _server_peak(sizer, sut_name, trace)
            else:
                r = sizer.run(sut_name, scenario, mode, run_dir, enable_trace=trace)
            state["runs"].append(r)
            # what is done is kept: a later failure or Ctrl-C leaves these runs on disk
            report.write_results(out_root, payload(False))
        if plan["sweep"]:
            state["sweep"] = _run_sweep(sizer, plan, order)
        for test in plan["audits"]:
            for sut_name in plan["suts"]:
                for scenario in order:
                    state["audits"].append(_audit(sizer, test, sut_name, scenario,
                                                  state["runs"], out_root))
                    report.write_results(out_root, payload(False))
    except (FastresError, KeyboardInterrupt) as exc:
        report.write_results(out_root, payload(False, str(exc) or type(exc).__name__))
        raise

    final = payload(True)
    report.write_results(out_root, final)
    rows, peaks, quick = final["rows"], state["peaks"], final["settings"]["quick"]
    md = report.write_report(out_root, final, rows, plots=not args.no_plots)
    html_path = out_root / "report.html"
    failed = report.failed_runs(final)
    failed_audits = [a for a in state["audits"] if not a["passed"]]
    rc = 1 if failed or failed_audits else 0
    if args.json:
        progress.emit("done", rc=rc, results=str(out_root / "results.json"), report_md=str(md),
                      report_html=str(html_path), rows=rows,
                      server_peak={u: {"peak": p["peak"], "confirmed": p["confirmed"]}
                                   for u, p in peaks.items()},
                      audits=[{k: a[k] for k in ("sut", "scenario", "test", "passed")}
                              for a in state["audits"]],
                      failed=[{k: r[k] for k in ("sut", "scenario", "mode", "failed")}
                              for r in failed])
    else:
        print(report.format_table(rows, quick=quick, online=args.online))
        print(report.preprocessing_line(final["preprocessing"]))
        for u, p in peaks.items():
            print(f"Server peak {u}: {_peak_text(p)}")
        if len(peaks) == 2 and all(p["peak"] for p in peaks.values()):
            a, b = (peaks[u]["peak"] for u in SUTS if u in peaks)
            print(f"Server peak native / reference: {b / a:.2f}x")
        for a in state["audits"]:
            print(f"{a['test']} {a['sut']} {a['scenario']}: "
                  f"{'PASS' if a['passed'] else 'FAIL'} ("
                  + "; ".join(f"{c['name']} {'pass' if c['passed'] else 'FAIL'}: {c['message']}"
                              for c in a["checks"]) + ")")
        print(f"\nresults: {out_root / 'results.json'}, report: {md}, {html_path} "
              f"(took {fmt_duration(progress.elapsed())})")
    if failed:
        print("fastres.bench: error: failed runs, not results: " + "; ".join(
            f"{r['sut']} {r['scenario']} {r.get('audit') or r['mode']}: {r['failed']}"
            for r in failed), file=sys.stderr)
    if failed_audits:
        print("fastres.bench: error: compliance audits failed: " + ", ".join(
            f"{a['test']} {a['sut']} {a['scenario']}" for a in failed_audits), file=sys.stderr)
    return rc


def _audit(sizer: _QuickSizer, test: str, sut_name: str, scenario: str,
           runs: list[dict[str, Any]], out_root: Path) -> dict[str, Any]:
    """Run compliance audit ``test`` for one SUT and scenario with the settings of its
    performance run, and verify it (:mod:`fastres.bench.audit`). Returns the verdict."""
    from .audit import AuditResult, Check, verify

    def main_run(mode: str) -> dict[str, Any] | None:
        return next((r for r in runs if (r["sut"], r["scenario"], r["mode"], r["kind"])
                     == (sut_name, scenario, mode, "run")), None)

    audit_dir = out_root / sut_name / scenario / test
    perf, acc = main_run("performance"), main_run("accuracy")
    missing = [(m, r) for m, r in (("performance", perf),) + ((("accuracy", acc),)
                                                            if test == "TEST01" else ())
               if r is None or r["failed"]]
    run: dict[str, Any] | None = None
    if missing:
        checks = [Check("prerequisites", False, "; ".join(
            f"the {m} run " + ("is missing" if r is None else f"failed ({r['failed']})")
            for m, r in missing) + ": nothing valid to compare with")]
        result = AuditResult(test, scenario, checks, str(audit_dir))
    else:
        assert perf is not None
        overrides = dict(perf.get("settings") or {})
        if scenario in ("Server", "Offline") and perf.get("target_qps"):
            overrides["target_qps"] = perf["target_qps"]
        if scenario == "Offline" and sizer.enabled() and perf.get("value"):
            # Offline issues expected QPS x duration samples: an audit run even a little faster
            # than the performance run would run out of them and be INVALID on that alone. The
            # score (samples/s) does not depend on the count.
            overrides["target_qps"] = round(max(overrides.get("target_qps") or 0,
                                                2 * perf["value"]), 2)
        run = sizer.run(sut_name, scenario, "performance", audit_dir, kind="audit", audit=test,
                        note=f"compliance audit {test}", **overrides)
        if run["failed"]:
            result = AuditResult(test, scenario, [Check("audit run", False,
                                                        f"failed: {run['failed']}")],
                                 str(audit_dir))
        else:
            result = verify(test, performance_dir=perf["log_dir"], audit_dir=audit_dir,
                            accuracy_dir=acc["log_dir"] if acc else None,
                            dtype=RESPONSE_DTYPE[sut_name])
    out = {"sut": sut_name, **result.as_dict(), "scenario": scenario, "run": run,
           "audit_dir_rel": os.path.relpath(audit_dir, out_root)}
    sizer.progress.emit("audit", sut=sut_name, scenario=scenario, test=test,
                        passed=result.passed)
    sizer.progress.say(f"    {test} {sut_name} {scenario}: "
                       f"{'PASS' if result.passed else 'FAIL'}")
    return out


def _payload(args: argparse.Namespace, plan: dict[str, Any], inputs: dict[str, Any],
             dataset: Any, store: Any, out_root: Path, state: dict[str, Any], complete: bool,
             error: str | None) -> dict[str, Any]:
    """What results.json holds: every figure, setting and the environment."""
    from ..sut.native import config_dict

    rank = {s: i for i, s in enumerate(flg.SCENARIOS)}
    runs = sorted(state["runs"], key=lambda r: (rank[r["scenario"]],
                                                plan["suts"].index(r["sut"]),
                                                plan["modes"].index(r["mode"])))
    sweep = state["sweep"]
    for r in runs + [x for info in (sweep or {}).get("scenarios", {}).values()
                     for x in info["results"]]:
        r["log_dir_rel"] = os.path.relpath(r["log_dir"], out_root)
    quick = not args.official
    preprocessing = _preprocessing_info(args, store)
    label = report.QUICK_LABEL if quick else "official MLPerf settings"
    if preprocessing["online"]:
        label = f"{label}; native SUT: {preprocessing['online']['label']}"
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "label": label,
        "complete": complete,
        "error": error,
        "preprocessing": preprocessing,
        "settings": {
            "quick": quick, "scenarios": plan["scenarios"], "modes": plan["modes"],
            "suts": plan["suts"], "model": str(inputs["model"]), "dataset": str(inputs["dataset"]),
            "synthetic_default": inputs["synthetic"], "images": len(store),
            "images_listed": len(dataset),
            "skipped_bad": [dict(b) for b in store.skipped_bad],
            "threads": args.threads or os.cpu_count(), "max_batchsize": args.max_batchsize,
            "time_s": args.time, "target_qps": args.target_qps,
            "native_engine": args.engine, "native_issue": args.issue,
            "native_knobs": {k: v for k, v in _native_knobs(args).items() if v is not None},
            "native_config": {sc: config_dict(_native_config(args, sc))
                              for sc in plan["scenarios"]} if "native" in plan["suts"] else {},
            "user_conf": str(args.user_conf) if args.user_conf else None,
            "find_peak": plan["find_peak"],
            "search": {"precision": args.search_precision, "budget_s": args.search_budget,
                       "trial_s": args.search_time,
                       "min_queries": int(flg.QUICK_DEFAULTS["Server"]["min_query_count"]),
                       "why_off": plan["find_peak_why_off"]},
            "sweep": plan["sweep"] or None,
            "audits": plan["audits"],
            "watchdog_s": args.watchdog_s or None,
            "latency_trace": {s: _trace_policy(args, s) for s in plan["suts"]},
            "input_name": args.input_name, "output_name": args.output_name,
            "data_format": args.data_format, "count": args.count,
            "skip_missing": args.skip_missing, "cache_dir": str(args.cache_dir),
            "preprocess": args.preprocess, "store_producer": store.producer,
            "skip_bad": args.skip_bad, "online": args.online,
            "dali_device": args.dali_device if args.preprocess == "dali" or args.online else None,
            "command_line": getattr(args, "command_line", None),
        },
        "environment": _environment(),
        "rows": report.build_rows(runs, baseline=SUTS[0]),
        "runs": runs,
        "server_peak": state["peaks"],
        "sweep": sweep,
        "audits": state["audits"],
        "published": [dict(e) for e in _published()],
    }


def _published() -> tuple[dict[str, Any], ...]:
    from .published import PUBLISHED

    return PUBLISHED
