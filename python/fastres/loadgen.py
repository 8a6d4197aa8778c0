"""LoadGen glue shared by every fastres SUT: scenarios, test settings, running a test, reading
LoadGen's logs back, and top-1 accuracy from ``mlperf_log_accuracy.json``.

Two kinds of settings (``make_settings``):

* **official**: LoadGen's own ``mlperf.conf`` (compiled into ``mlperf_loadgen``) for
  ``resnet50``, then an optional ``user.conf``. This is what a submission runs: 600 s minimum
  duration, 24576 Offline samples, 1024 performance samples, the official RNG seeds.
* **quick**: the same embedded ``mlperf.conf`` (so percentiles, Server latency bound, seeds and
  MultiStream's 8 samples per query stay MLPerf's), with durations and counts cut down so a run
  takes seconds on two CPU cores. Every result of a quick run carries ``quick=True`` and the
  label :data:`QUICK_LABEL`; it is never a valid MLPerf result, whatever LoadGen says.

How ``TestSettings.FromConfig(path, model, scenario, conf_type)`` behaves in LoadGen 6.0.17
(checked against the settings fields and ``mlperf_log_detail.txt``):

* ``conf_type=0`` ignores ``path`` and parses the embedded ``mlperf.conf``.
* ``conf_type=1`` (the default) parses ``path``; on the *first* such call in a process it first
  loads the embedded ``mlperf.conf``, on every later call it does not, and it logs
  ``error_invalid_config: Multiple conf files are used`` into the next test's detail log
  (so the summary reports an ERROR). A missing file returns ``-ENOENT`` (-2), silently.
* any other ``conf_type`` parses ``path`` only, with no process-wide counter.

So fastres loads the embedded file explicitly with ``conf_type=0`` and ``user.conf`` with
``conf_type=2``: the same settings on every run in a process, and no spurious error.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, FastresError, InvalidArgument

try:
    import mlperf_loadgen as lg
except ImportError as exc:  # pragma: no cover - a hard dependency, but say what to install
    from .errors import Unavailable

    raise Unavailable(
        "fastres.loadgen needs MLPerf LoadGen's Python module 'mlperf_loadgen': "
        "pip install mlcommons-loadgen") from exc

__all__ = [
    "SCENARIOS",
    "MODES",
    "MODEL_NAME",
    "QUICK_LABEL",
    "OFFICIAL_LABEL",
    "RESNET50_PERFORMANCE_SAMPLE_COUNT",
    "OFFICIAL_MIN_DURATION_MS",
    "QUICK_DEFAULTS",
    "Settings",
    "Summary",
    "Detail",
    "AccuracyResult",
    "RunResult",
    "SUTHandle",
    "QSLHandle",
    "parse_scenario",
    "parse_mode",
    "performance_sample_count",
    "make_settings",
    "make_sut",
    "make_fast_sut",
    "FastSUTHandle",
    "make_qsl",
    "prepare_output_dir",
    "run_test",
    "parse_summary",
    "parse_summary_text",
    "parse_detail",
    "accuracy_from_log",
    "LOG_FILES",
    "ResponseAccount",
    "account_responses",
    "in_running_test",
]

SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")
MODES = ("performance", "accuracy")
MODEL_NAME = "resnet50"

_SCENARIO_ENUM = {name: getattr(lg.TestScenario, name) for name in SCENARIOS}
_MODE_ENUM = {"performance": lg.TestMode.PerformanceOnly, "accuracy": lg.TestMode.AccuracyOnly}

#: ``resnet50.*.performance_sample_count_override`` in LoadGen's mlperf.conf.
RESNET50_PERFORMANCE_SAMPLE_COUNT = 1024
#: ``*.*.min_duration`` in mlperf.conf: anything shorter cannot be a valid MLPerf result.
OFFICIAL_MIN_DURATION_MS = 600_000

QUICK_LABEL = "quick — not a valid MLPerf result"
OFFICIAL_LABEL = "official MLPerf settings (LoadGen mlperf.conf)"

#: Quick settings, per scenario. min_query_count is the least count LoadGen's early stopping
#: accepts at zero over-latency queries (64 at the 90th percentile, 662 at the 99th for
#: MultiStream, ~460 for Server), so a fast enough SUT still gets a VALID LoadGen verdict;
#: Server asks for 1000 so that a few queries over the latency bound do not fail early stopping
#: by themselves (500 was measured to fail with p99 under the bound).
#: expected_latency_ns under-estimates on purpose: LoadGen pre-generates
#: min_duration / expected_latency queries and ends early ("ran out of generated queries")
#: if the SUT is faster than expected. 10 us (a null engine's latency) makes LoadGen generate
#: 100k queries per second of min_duration, ~60 MB and a fraction of a second; 1 us would cost
#: ten times that.
QUICK_DEFAULTS: dict[str, dict[str, float]] = {
    "SingleStream": {"min_query_count": 64, "expected_latency_ns": 10_000},
    "MultiStream": {"min_query_count": 662, "expected_latency_ns": 10_000},
    "Server": {"min_query_count": 1000, "target_qps": 100.0},
    "Offline": {"min_query_count": 1, "target_qps": 100.0},
}
QUICK_MIN_DURATION_MS = 1000
QUICK_MAX_DURATION_MS = 10_000

#: The files LoadGen writes into the output folder.
LOG_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "mlperf_log_accuracy.json",
             "mlperf_log_trace.json")

# LoadGen keeps process-wide state (one logger, one test at a time).
_TEST_LOCK = threading.Lock()
# The SUT and QSL handles of the test running now: destroying one would crash LoadGen.
_RUNNING: set[int] = set()


# --------------------------------------------------------------------------------------------
# scenarios and modes


def _canonical(text: str) -> str:
    return re.sub(r"[\s_\-]", "", text).lower()


def parse_scenario(scenario: str | Any) -> str:
    """Return the canonical scenario name for ``scenario`` (any case, ``-``/``_`` ignored,
    or an ``lg.TestScenario``). Raises InvalidArgument listing the valid ones."""
    if isinstance(scenario, lg.TestScenario):
        for name, enum in _SCENARIO_ENUM.items():
            if scenario == enum:
                return name
    if isinstance(scenario, str):
        key = _canonical(scenario)
        for name in SCENARIOS:
            if _canonical(name) == key:
                return name
    raise InvalidArgument(
        f"unknown scenario {scenario!r}; valid scenarios: {', '.join(SCENARIOS)}")


def parse_mode(mode: str | Any) -> str:
    """Return ``"performance"`` or ``"accuracy"`` for ``mode`` (any case; LoadGen's
    ``PerformanceOnly``/``AccuracyOnly`` and ``lg.TestMode`` values accepted)."""
    if isinstance(mode, lg.TestMode):
        for name, enum in _MODE_ENUM.items():
            if mode == enum:
                return name
    if isinstance(mode, str):
        key = _canonical(mode)
        for name in MODES:
            if key in (name, name + "only"):
                return name
    raise InvalidArgument(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")


def performance_sample_count(dataset_size: int) -> int:
    """The QSL's performance sample count: LoadGen's resnet50 value (1024), or the dataset
    size when that is smaller."""
    if int(dataset_size) < 1:
        raise InvalidArgument(f"dataset size must be at least 1, got {dataset_size}")
    return min(RESNET50_PERFORMANCE_SAMPLE_COUNT, int(dataset_size))


# --------------------------------------------------------------------------------------------
# settings


class Settings(lg.TestSettings):
    """An ``lg.TestSettings`` that remembers how it was made, so results can say whether they
    come from official or quick settings. Pass it anywhere LoadGen takes TestSettings."""

    def __init__(self, scenario: str, mode: str, *, quick: bool, user_conf: Path | None) -> None:
        super().__init__()
        self.scenario_name = scenario
        self.mode_name = mode
        self.quick = quick
        self.user_conf = user_conf

    @property
    def label(self) -> str:
        return QUICK_LABEL if self.quick else OFFICIAL_LABEL

    def as_dict(self) -> dict[str, Any]:
        """The LoadGen fields as plain values (for reports)."""
        out: dict[str, Any] = {}
        for name in dir(lg.TestSettings):
            if name.startswith("_") or name == "FromConfig":
                continue
            value = getattr(self, name)
            if callable(value):
                continue
            out[name] = getattr(value, "name", value)
        return out


def _check_positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise InvalidArgument(f"{name} must be a positive number, got {value!r}")


_C_INTEGER = re.compile(r"^[+-]?(0[xX][0-9a-fA-F]+|[0-9]+)$")
_C_DOUBLE = re.compile(
    r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf(inity)?|nan)$", re.IGNORECASE)


def _is_c_number(token: str) -> bool:
    return bool(_C_INTEGER.match(token) or _C_DOUBLE.match(token))


_ALL_SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")

#: The keys LoadGen 6.0 applies from a user.conf (``TestSettings::FromConfig``, conf_type 2),
#: and the scenarios it applies each to. Measured against LoadGen: a line
#: ``*.<scenario>.<key> = 3`` changes a TestSettings field exactly for these pairs
#: (tests/test_bad_input.py checks the table against the installed LoadGen).
USER_CONF_KEYS: dict[str, tuple[str, ...]] = {
    **{key: _ALL_SCENARIOS for key in (
        "mode", "min_duration", "max_duration", "min_query_count", "max_query_count",
        "accuracy_log_rng_seed", "accuracy_log_sampling_target", "print_timestamps",
        "performance_issue_unique", "performance_issue_same", "performance_issue_same_index",
        "performance_sample_count_override", "accuracy_sample_count_override")},
    "target_latency_percentile": ("SingleStream", "MultiStream", "Server"),
    "target_latency": ("SingleStream", "MultiStream", "Server"),
    "target_qps": ("Server", "Offline"),
    "samples_per_query": ("MultiStream",),
    "max_async_queries": ("Server",),
    "coalesce_queries": ("Server",),
}
#: Keys LoadGen takes only from its own mlperf.conf: in a user.conf it ignores them silently.
MLPERF_CONF_ONLY_KEYS = (
    "qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed", "accuracy_log_probability",
    "test05", "test05_qsl_rng_seed", "test05_sample_index_rng_seed",
    "test05_schedule_rng_seed", "sample_concatenate_permutation", "use_token_latencies",
    "ttft_latency", "tpot_latency", "infer_token_latencies", "token_latency_scaling_factor",
    "target_duration")
#: Other MLPerf benchmarks of LoadGen's mlperf.conf: a shared user.conf may carry their lines
#: (LoadGen ignores them for resnet50), so they are not taken for a misspelt "resnet50".
_OTHER_BENCHMARKS = ("ssd-mobilenet", "retinanet", "bert", "dlrm", "dlrm-v2", "dlrm-v3", "rnnt",
                     "gptj", "mixtral-8x7b", "llama2-70b", "stable-diffusion-xl", "rgat",
                     "pointpainting", "deepseek-r1", "whisper", "yolo", "3d-unet", "gpt-oss-120b")


def _check_user_conf_key(path: Path, line_nr: int, key: str) -> None:
    """A ``<model>.<scenario>.<key>`` LoadGen would apply to resnet50, or one it would
    ignore on purpose (another model's line); anything LoadGen would ignore silently by
    mistake (an unknown key, a misspelt scenario or model) raises InvalidArgument."""
    import difflib

    where = f"user.conf {str(path)!r} line {line_nr}"
    parts = key.rsplit(".", 2)
    if len(parts) != 3 or not all(parts):
        raise InvalidArgument(f"{where}: {key!r} is not '<model>.<scenario>.<key>', e.g. "
                              "'resnet50.Server.target_qps'; LoadGen would ignore the line")
    model, scenario, name = parts
    if scenario != "*" and scenario not in _ALL_SCENARIOS:
        near = difflib.get_close_matches(scenario, _ALL_SCENARIOS, n=1, cutoff=0.5)
        raise InvalidArgument(
            f"{where}: unknown scenario {scenario!r} in {key!r}"
            + (f" (did you mean {near[0]!r}?)" if near else "")
            + f"; LoadGen would ignore the line. Scenarios: {', '.join(_ALL_SCENARIOS)} or '*'")
    if model not in ("*", MODEL_NAME) and not any(
            model == b or model.startswith(b + "-") for b in _OTHER_BENCHMARKS) and \
            difflib.SequenceMatcher(None, model.lower(), MODEL_NAME).ratio() >= 0.7:
        raise InvalidArgument(f"{where}: model {model!r} in {key!r} is not {MODEL_NAME!r} "
                              f"(did you mean {MODEL_NAME}.{scenario}.{name}?); LoadGen would "
                              "ignore the line")
    if name in MLPERF_CONF_ONLY_KEYS:
        raise InvalidArgument(f"{where}: LoadGen takes {name!r} only from its own mlperf.conf "
                              "and ignores it in a user.conf; remove the line")
    if name not in USER_CONF_KEYS:
        near = difflib.get_close_matches(name, list(USER_CONF_KEYS), n=1, cutoff=0.6)
        raise InvalidArgument(
            f"{where}: unknown key {name!r} in {key!r}"
            + (f" (did you mean {near[0]!r}?)" if near else "")
            + f"; LoadGen would ignore it silently. Keys: {', '.join(sorted(USER_CONF_KEYS))}")
    applies = USER_CONF_KEYS[name]
    if scenario != "*" and scenario not in applies:
        raise InvalidArgument(f"{where}: LoadGen reads {name!r} only for "
                              f"{', '.join(applies)}, not {scenario}; it would ignore the line")


def _check_user_conf(path: Path) -> None:
    """Apply LoadGen's config grammar (test_settings_internal.cc) line by line: whitespace-
    separated words ``key = value``; a ``#`` word ends the line unless a value is expected
    (so ``key = 1 # note`` is an error, as in LoadGen); a value must read whole as a C
    integer or double. Then each key must be one LoadGen applies (see
    :func:`_check_user_conf_key`): LoadGen itself ignores unknown keys without a word.
    Raises InvalidArgument naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InvalidArgument(f"user.conf {str(path)!r} cannot be read: "
                              f"{exc.strerror or exc}") from exc
    hint = ("lines read '<model|*>.<scenario|*>.<key> = <number>', e.g. "
            "'resnet50.Server.target_qps = 100'; comments go on lines of their own, "
            "starting with '# '")
    for line_nr, line in enumerate(lines, 1):
        looking_for = 0  # 0: key, 1: '=', 2: value
        key = None
        for word in line.split():
            if word == "#" and looking_for != 2:
                break
            if looking_for == 2:
                if _is_c_number(word):
                    continue
                raise InvalidArgument(f"user.conf {str(path)!r} line {line_nr}: {word!r} is "
                                      f"not a number; {hint}")
            if looking_for == 1 and word != "=":
                raise InvalidArgument(f"user.conf {str(path)!r} line {line_nr}: expected '=' "
                                      f"after the key, got {word!r}; {hint}")
            if looking_for == 0:
                key = word
            looking_for += 1
        if key is not None:
            _check_user_conf_key(path, line_nr, key)


def make_settings(
    scenario: str,
    mode: str = "performance",
    *,
    official: bool = False,
    user_conf: str | os.PathLike[str] | None = None,
    target_qps: float | None = None,
    expected_latency_ns: int | None = None,
    server_target_latency_ns: int | None = None,
    min_duration_ms: int | None = None,
    max_duration_ms: int | None = None,
    min_query_count: int | None = None,
    max_query_count: int | None = None,
    samples_per_query: int | None = None,
    performance_sample_count_override: int | None = None,
) -> Settings:
    """Build LoadGen test settings for ``resnet50``.

    ``official=True``: the embedded ``mlperf.conf``, then ``user_conf`` if given. Only the
    values a ``user.conf`` may set are accepted as keywords (``target_qps`` for Server and
    Offline, ``expected_latency_ns`` for SingleStream/MultiStream, ``server_target_latency_ns``);
    durations and counts come from mlperf.conf.

    ``official=False`` (quick): the embedded ``mlperf.conf``, then :data:`QUICK_DEFAULTS`
    (about a second per run), then ``user_conf``, then the keywords. ``target_qps`` is the Server
    target QPS or the Offline expected QPS; set it near what the SUT can do (Offline ends early
    and is INVALID when the SUT beats it, and runs long when it falls far short). Server
    accuracy runs also issue at ``target_qps``: N samples take N / target_qps seconds.

    Called from any thread; does not block. Raises InvalidArgument for a bad scenario, mode or
    value, or a ``user_conf`` that does not exist or LoadGen cannot parse.
    """
    scenario = parse_scenario(scenario)
    mode = parse_mode(mode)
    conf_path: Path | None = None
    if user_conf is not None:
        conf_path = Path(user_conf).expanduser()
        if not conf_path.is_file():
            raise InvalidArgument(
                f"user.conf {str(conf_path)!r} does not exist or is not a file; pass the path "
                "of an existing LoadGen user.conf, or user_conf=None")
        conf_path = conf_path.resolve()

    _check_positive("target_qps", target_qps)
    _check_positive("expected_latency_ns", expected_latency_ns)
    _check_positive("server_target_latency_ns", server_target_latency_ns)
    _check_positive("min_duration_ms", min_duration_ms, allow_zero=True)
    _check_positive("max_duration_ms", max_duration_ms, allow_zero=True)
    _check_positive("min_query_count", min_query_count)
    _check_positive("max_query_count", max_query_count, allow_zero=True)
    _check_positive("samples_per_query", samples_per_query)
    _check_positive("performance_sample_count_override", performance_sample_count_override,
                    allow_zero=True)
    if official:
        fixed = {"min_duration_ms": min_duration_ms, "max_duration_ms": max_duration_ms,
                 "min_query_count": min_query_count, "max_query_count": max_query_count,
                 "samples_per_query": samples_per_query,
                 "performance_sample_count_override": performance_sample_count_override}
        given = [k for k, v in fixed.items() if v is not None]
        if given:
            raise InvalidArgument(
                f"official=True takes {', '.join(given)} from LoadGen's mlperf.conf; drop "
                "them, put them in a user.conf (not valid for a submission), or use quick "
                "settings (official=False)")

    settings = Settings(scenario, mode, quick=not official, user_conf=conf_path)
    rc = settings.FromConfig("", MODEL_NAME, scenario, 0)
    if rc != 0:  # pragma: no cover - the embedded file always parses
        raise FastresError(f"LoadGen could not load its embedded mlperf.conf (rc={rc})")

    if not official:
        quick = QUICK_DEFAULTS[scenario]
        settings.min_duration_ms = QUICK_MIN_DURATION_MS
        settings.max_duration_ms = QUICK_MAX_DURATION_MS
        settings.min_query_count = int(quick["min_query_count"])
        settings.max_query_count = 0
        # 0: LoadGen uses the QSL's own performance count instead of mlperf.conf's 1024.
        settings.performance_sample_count_override = 0
        if "expected_latency_ns" in quick:
            settings.single_stream_expected_latency_ns = int(quick["expected_latency_ns"])
            settings.multi_stream_expected_latency_ns = int(quick["expected_latency_ns"])
        if "target_qps" in quick:
            settings.server_target_qps = quick["target_qps"]
            settings.offline_expected_qps = quick["target_qps"]

    if conf_path is not None:
        # LoadGen logs a parse error into the *next* test's detail log, so check first.
        _check_user_conf(conf_path)
        # conf_type=2: parse this file only (see the module docstring for 0 and 1).
        rc = settings.FromConfig(str(conf_path), MODEL_NAME, scenario, 2)
        if rc != 0:
            raise InvalidArgument(
                f"user.conf {str(conf_path)!r}: LoadGen could not parse it (rc={rc}); lines must "
                "read '<model|*>.<scenario|*>.<key> = <number>', e.g. "
                "'resnet50.Server.target_qps = 100'")

    if target_qps is not None:
        settings.server_target_qps = float(target_qps)
        settings.offline_expected_qps = float(target_qps)
    if expected_latency_ns is not None:
        settings.single_stream_expected_latency_ns = int(expected_latency_ns)
        settings.multi_stream_expected_latency_ns = int(expected_latency_ns)
    if server_target_latency_ns is not None:
        settings.server_target_latency_ns = int(server_target_latency_ns)
    if min_duration_ms is not None:
        settings.min_duration_ms = int(min_duration_ms)
    if max_duration_ms is not None:
        settings.max_duration_ms = int(max_duration_ms)
    if min_query_count is not None:
        settings.min_query_count = int(min_query_count)
    if max_query_count is not None:
        settings.max_query_count = int(max_query_count)
    if samples_per_query is not None:
        settings.multi_stream_samples_per_query = int(samples_per_query)
    if performance_sample_count_override is not None:
        settings.performance_sample_count_override = int(performance_sample_count_override)

    settings.scenario = _SCENARIO_ENUM[scenario]
    settings.mode = _MODE_ENUM[mode]
    return settings


# --------------------------------------------------------------------------------------------
# LoadGen handles


class _Handle:
    """Owns one LoadGen handle and the Python callbacks LoadGen calls through it.

    ``close()`` destroys the handle exactly once; a context manager closes it on any exit.
    Not thread-safe: close it from the thread that made it, after the test has returned.
    """

    _destroy: Callable[[int], None]
    kind = "handle"

    def __init__(self, handle: int, callbacks: tuple[Callable[..., Any], ...]) -> None:
        self._handle: int | None = int(handle)
        self._callbacks = callbacks  # LoadGen holds them too; keep ours for clarity

    @property
    def handle(self) -> int:
        if self._handle is None:
            raise InvalidArgument(f"this LoadGen {self.kind} was already destroyed")
        return self._handle

    @property
    def closed(self) -> bool:
        return self._handle is None

    def __int__(self) -> int:
        return self.handle

    __index__ = __int__

    def close(self) -> None:
        """Destroy the handle (once). Raises InvalidArgument, destroying nothing, while a
        LoadGen test is using it: LoadGen would crash."""
        if self._handle is not None:
            if in_running_test(self._handle):
                raise InvalidArgument(
                    f"this LoadGen {self.kind} is in a running test: stop the SUT (its stop() "
                    "answers what is left) and close it after run_test returns")
            handle, self._handle = self._handle, None
            type(self)._destroy(handle)

    def __enter__(self):  # noqa: ANN204 - returns the subclass
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "destroyed" if self._handle is None else f"handle={self._handle:#x}"
        return f"{type(self).__name__}({state})"


class SUTHandle(_Handle):
    """A LoadGen SUT made by :func:`make_sut`."""

    kind = "SUT"
    _destroy = staticmethod(lg.DestroySUT)


class FastSUTHandle(_Handle):
    """A LoadGen SUT made by :func:`make_fast_sut` (``ConstructFastSUT``)."""

    kind = "fast SUT"
    _destroy = staticmethod(lg.DestroyFastSUT)


class QSLHandle(_Handle):
    """A LoadGen QSL made by :func:`make_qsl`."""

    kind = "QSL"
    _destroy = staticmethod(lg.DestroyQSL)

    def __init__(self, handle: int, callbacks: tuple[Callable[..., Any], ...], total_count: int,
                 performance_count: int) -> None:
        super().__init__(handle, callbacks)
        self.total_count = total_count
        self.performance_count = performance_count


def make_sut(issue_queries: Callable[[list[Any]], None],
             flush_queries: Callable[[], None] | None = None) -> SUTHandle:
    """Wrap ``lg.ConstructSUT``. LoadGen calls ``issue_queries(query_samples)`` from its issue
    thread(s) and ``flush_queries()`` at the end of a test; neither may raise (an exception
    escaping into LoadGen aborts the process at exit), so SUTs catch and answer empty."""
    if not callable(issue_queries):
        raise InvalidArgument("issue_queries must be callable")
    flush = flush_queries if flush_queries is not None else _no_flush
    return SUTHandle(lg.ConstructSUT(issue_queries, flush), (issue_queries, flush))


def make_fast_sut(issue_fast: Callable[[list[int], list[int]], None],
                  flush_queries: Callable[[], None] | None = None) -> FastSUTHandle:
    """``lg.ConstructFastSUT``: LoadGen calls ``issue_fast(ids, indices)`` with two lists of
    ints instead of a list of QuerySample objects. Use it as a context manager."""
    flush = flush_queries if flush_queries is not None else _no_flush
    return FastSUTHandle(lg.ConstructFastSUT(issue_fast, flush), (issue_fast, flush))


def in_running_test(handle: int | _Handle) -> bool:
    """Whether a LoadGen test is running with this SUT or QSL handle now. Any thread."""
    value = handle._handle if isinstance(handle, _Handle) else handle
    return value is not None and int(value) in _RUNNING


def _no_flush() -> None:
    """LoadGen calls this at the end of a test from its main thread; nothing is pending."""


def make_qsl(total_count: int, performance_count: int,
             load_fn: Callable[[list[int]], None],
             unload_fn: Callable[[list[int]], None]) -> QSLHandle:
    """Wrap ``lg.ConstructQSL``. LoadGen calls ``load_fn(indices)`` / ``unload_fn(indices)``
    from the thread that runs the test, before and after each set of samples; they may block
    (loading is untimed) but must not raise."""
    total_count = int(total_count)
    performance_count = int(performance_count)
    if total_count < 1:
        raise InvalidArgument(f"QSL total_count must be at least 1, got {total_count}")
    if not 1 <= performance_count <= total_count:
        raise InvalidArgument(
            f"QSL performance_count must be between 1 and total_count={total_count}, "
            f"got {performance_count}")
    if not callable(load_fn) or not callable(unload_fn):
        raise InvalidArgument("QSL load_fn and unload_fn must be callable")
    handle = lg.ConstructQSL(total_count, performance_count, load_fn, unload_fn)
    return QSLHandle(handle, (load_fn, unload_fn), total_count, performance_count)


# --------------------------------------------------------------------------------------------
# results


@dataclasses.dataclass
class Summary:
    """``mlperf_log_summary.txt``, parsed. Latencies are in nanoseconds, keyed ``min``,
    ``mean``, ``p50`` ... ``p99.9``, ``max``; for MultiStream they are per query."""

    scenario: str | None = None
    mode: str | None = None
    sut_name: str | None = None
    metric: str | None = None
    value: float | None = None
    result: str | None = None
    constraints: dict[str, bool] = dataclasses.field(default_factory=dict)
    scheduled_samples_per_second: float | None = None
    latencies_ns: dict[str, float] = dataclasses.field(default_factory=dict)
    early_stopping: list[str] = dataclasses.field(default_factory=list)
    recommendations: list[str] = dataclasses.field(default_factory=list)
    test_parameters: dict[str, str] = dataclasses.field(default_factory=dict)
    warnings: int | None = None
    errors: int | None = None
    raw: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.result == "VALID"

    @property
    def unmet(self) -> list[str]:
        """The constraints LoadGen reports as not satisfied, e.g. ``Min duration satisfied``."""
        return [name for name, ok in self.constraints.items() if not ok]


@dataclasses.dataclass
class Detail:
    """``mlperf_log_detail.txt`` (``:::MLLOG`` JSON lines), reduced to what fastres reads."""

    errors: list[str] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    values: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class AccuracyResult:
    """Top-1 by ``tools/accuracy-imagenet.py``'s rules: ``total`` distinct ``qsl_idx``,
    ``good`` of them right, ``accuracy`` in percent; ``entries`` counts duplicates too."""

    good: int
    total: int
    accuracy: float
    entries: int
    dtype: str

    @property
    def duplicates(self) -> int:
        return self.entries - self.total


@dataclasses.dataclass
class RunResult:
    """One LoadGen test: what ran, where its logs are, and what they say."""

    scenario: str
    mode: str
    output_dir: Path
    summary: Summary
    detail: Detail | None
    quick: bool
    label: str
    wall_s: float
    accuracy: AccuracyResult | None = None
    sut_errors: int = 0

    @property
    def valid(self) -> bool:
        """LoadGen's verdict. A quick run may be VALID here and still not an MLPerf result."""
        return self.summary.valid

    @property
    def metric(self) -> str | None:
        return self.summary.metric

    @property
    def value(self) -> float | None:
        return self.summary.value


# --------------------------------------------------------------------------------------------
# running a test


def prepare_output_dir(output_dir: str | os.PathLike[str]) -> Path:
    """Create ``output_dir`` if needed, check that it is writable, remove a previous run's
    LoadGen logs from it, and return its absolute path. Raises InvalidArgument naming the
    folder when it cannot be created or written (LoadGen itself would only print a message
    and abort the process at exit)."""
    path = Path(output_dir).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgument(
            f"output folder {str(path)!r} cannot be created ({exc.strerror or exc}); "
            "choose a writable folder") from exc
    if not path.is_dir():  # pragma: no cover - mkdir(exist_ok) raises for a file already
        raise InvalidArgument(f"output folder {str(path)!r} is not a folder")
    try:  # os.access lies for root; try the real thing
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise InvalidArgument(
            f"output folder {str(path)!r} is not writable ({exc.strerror or exc}); "
            "choose a writable folder") from exc
    for name in LOG_FILES:  # never parse a previous run's logs by mistake
        stale = path / name
        if stale.is_file():
            stale.unlink()
    return path.resolve()


def run_test(sut: int | SUTHandle, qsl: int | QSLHandle, settings: lg.TestSettings,
             output_dir: str | os.PathLike[str], *, quick: bool | None = None,
             audit_config: str | os.PathLike[str] | None = None,
             enable_trace: bool = False) -> RunResult:
    """Run one LoadGen test and parse its logs.

    Blocks the calling thread for the whole test; LoadGen calls the SUT and QSL callbacks from
    its own threads meanwhile. One test runs at a time per process (LoadGen's logger is
    global): concurrent calls wait for each other.

    ``quick`` defaults to true when :func:`make_settings` made quick settings or when
    ``min_duration_ms`` is below mlperf.conf's 600 s (a user.conf can lower it).

    ``audit_config`` is the compliance audit file LoadGen applies to this test (see
    :mod:`fastres.bench.audit`, which writes one into the run's folder and deletes it after
    the run). Without it LoadGen is pointed at ``<output_dir>/audit.config``, never at the
    working folder (LoadGen's default), so a stray file there cannot change an ordinary run;
    and a run refuses a folder that still holds an ``audit.config`` (left by an audit that was
    killed), rather than report an audit run as an ordinary result.
    """
    if not isinstance(settings, lg.TestSettings):
        raise InvalidArgument(
            f"settings must be mlperf_loadgen.TestSettings (see make_settings), "
            f"got {type(settings).__name__}")
    out = prepare_output_dir(output_dir)
    # the LoadGen fields are the truth: a caller may have changed them after make_settings
    scenario = parse_scenario(settings.scenario)
    mode = parse_mode(settings.mode)
    if quick is None:
        quick = bool(getattr(settings, "quick", False)) \
            or settings.min_duration_ms < OFFICIAL_MIN_DURATION_MS
    quick = bool(quick)

    log_output = lg.LogOutputSettings()
    log_output.outdir = str(out)
    log_output.copy_summary_to_stdout = False
    log_settings = lg.LogSettings()
    log_settings.log_output = log_output
    log_settings.enable_trace = bool(enable_trace)
    if audit_config is not None:
        audit = str(Path(audit_config).expanduser().resolve())
    else:
        audit = str(out / "audit.config")
        if Path(audit).exists():
            raise InvalidArgument(
                f"{audit} exists: an audit.config left by an interrupted compliance audit "
                "would turn this run into an audit; delete it (fastres writes its own for "
                "--audit and removes it after the run)")

    sut_handle = int(sut.handle if isinstance(sut, _Handle) else sut)
    qsl_handle = int(qsl.handle if isinstance(qsl, _Handle) else qsl)
    with _TEST_LOCK:
        _RUNNING.update((sut_handle, qsl_handle))
        try:
            start = time.perf_counter()
            lg.StartTestWithLogSettings(sut_handle, qsl_handle, settings, log_settings, audit)
            wall_s = time.perf_counter() - start
        finally:
            _RUNNING.clear()

    summary_path = out / "mlperf_log_summary.txt"
    if not summary_path.is_file():
        raise FastresError(
            f"LoadGen wrote no {summary_path}; see its messages on stderr")
    summary = parse_summary(summary_path)
    # LoadGen leaves scenario and mode out of the summary in accuracy mode.
    summary.scenario = summary.scenario or scenario
    summary.mode = summary.mode or ("AccuracyOnly" if mode == "accuracy" else "PerformanceOnly")
    detail_path = out / "mlperf_log_detail.txt"
    detail = parse_detail(detail_path) if detail_path.is_file() else None
    return RunResult(scenario=scenario, mode=mode, output_dir=out, summary=summary,
                     detail=detail, quick=quick, label=QUICK_LABEL if quick else OFFICIAL_LABEL,
                     wall_s=wall_s)


# --------------------------------------------------------------------------------------------
# log parsing

_PERCENTILE_STAT = re.compile(r"^(\d+(?:\.\d+)?) percentile latency \(ns\)$")
_HEADLINE_PERCENTILE = re.compile(r"^(\d+(?:\.\d+)?)th percentile latency \(ns\)$")
_COUNT_LINE = re.compile(r"^(\d+|No) (warning|error)s? encountered", re.IGNORECASE)
_HEADLINE_METRICS = ("Samples per second", "Completed samples per second")
_SECTIONS = ("MLPerf Results Summary", "Additional Stats", "Test Parameters Used")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _percentile_key(p: str) -> str:
    return f"p{float(p):g}"


def parse_summary(path: str | os.PathLike[str]) -> Summary:
    """Parse ``mlperf_log_summary.txt`` (LoadGen 4.x–6.x layout). Raises DataError if the
    file is missing."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read LoadGen summary {str(p)!r}: {exc.strerror or exc}") from exc
    return parse_summary_text(text)


def parse_summary_text(text: str) -> Summary:
    """Parse the text of a LoadGen summary. Unknown lines land in ``raw``; nothing raises."""
    s = Summary()
    section = ""
    block = ""  # "recommendations" / "early_stopping" inside the results section
    bullets: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or set(stripped) == {"="}:
            continue
        if stripped in _SECTIONS:
            section, block, bullets = stripped, "", None
            continue
        counted = _COUNT_LINE.match(stripped)
        if counted:
            n = 0 if counted.group(1).lower() == "no" else int(counted.group(1))
            if counted.group(2).lower() == "warning":
                s.warnings = n
            else:
                s.errors = n
            continue
        if stripped == "Recommendations:":
            block, bullets = "recommendations", s.recommendations
            continue
        if stripped == "Early Stopping Result:":
            block, bullets = "early_stopping", s.early_stopping
            continue
        if stripped.startswith("*") and bullets is not None:
            bullets.append(stripped.lstrip("* ").strip())
            continue
        if ":" not in stripped:
            if bullets is not None and bullets:  # a bullet wrapped onto the next line
                bullets[-1] += " " + stripped
            continue
        key, _, value = stripped.partition(":")
        key = " ".join(key.split())
        value = value.strip()
        if not value:  # a sub-heading such as "Per-query latency:"
            continue
        if section == "Test Parameters Used":
            s.test_parameters[key] = value
            continue
        s.raw[key] = value
        bullets = None
        if key == "SUT name":
            s.sut_name = value
        elif key == "Scenario":
            s.scenario = value
        elif key == "Mode":
            s.mode = value
        elif key == "Result is":
            s.result = value.upper()
        elif key.endswith("satisfied"):
            s.constraints[key] = value.lower() in ("yes", "true")
        elif key in _HEADLINE_METRICS or _HEADLINE_PERCENTILE.match(key):
            if s.metric is None:
                s.metric, s.value = key, _number(value)
        elif key == "Scheduled samples per second":
            s.scheduled_samples_per_second = _number(value)
        elif key in ("Min latency (ns)", "Max latency (ns)", "Mean latency (ns)"):
            num = _number(value)
            if num is not None:
                s.latencies_ns[key.split()[0].lower()] = num
        else:
            m = _PERCENTILE_STAT.match(key)
            if m:
                num = _number(value)
                if num is not None:
                    s.latencies_ns[_percentile_key(m.group(1))] = num
    order = ["min", "mean"] + sorted((k for k in s.latencies_ns if k.startswith("p")),
                                     key=lambda k: float(k[1:])) + ["max"]
    s.latencies_ns = {k: s.latencies_ns[k] for k in order if k in s.latencies_ns}
    return s


def parse_detail(path: str | os.PathLike[str]) -> Detail:
    """Parse ``mlperf_log_detail.txt``: the messages LoadGen flagged as errors or warnings, and
    the last value of every key (``effective_*`` settings, ``result_*`` figures...)."""
    p = Path(path)
    detail = Detail()
    try:
        lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read LoadGen detail log {str(p)!r}: {exc.strerror or exc}") \
            from exc
    for line in lines:
        if not line.startswith(":::MLLOG"):
            continue
        try:
            record = json.loads(line[len(":::MLLOG"):])
        except json.JSONDecodeError:
            continue
        key = record.get("key")
        value = record.get("value")
        meta = record.get("metadata") or {}
        if meta.get("is_error"):
            detail.errors.append(f"{key}: {value}")
        if meta.get("is_warning"):
            detail.warnings.append(f"{key}: {value}")
        if isinstance(key, str):
            detail.values[key] = value
    return detail


# --------------------------------------------------------------------------------------------
# accuracy

_ACCURACY_DTYPES = {name: np.dtype(name) for name in (
    "float16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64")}


def accuracy_from_log(path: str | os.PathLike[str], labels: Sequence[int] | np.ndarray |
                      Mapping[int, int], dtype: str = "float32") -> AccuracyResult:
    """Top-1 accuracy of ``mlperf_log_accuracy.json`` by the rules of MLPerf's
    ``tools/accuracy-imagenet.py``: skip a ``qsl_idx`` seen before, decode ``data`` (hex) as
    ``dtype`` (the SUT's response type; the reference answers float32), take ``int()`` of the
    first element as the label, compare with ``labels[qsl_idx]``; accuracy = good / distinct.

    One deviation: an entry with no data (a SUT's failed-batch answer) or a non-finite value
    counts as wrong; the MLPerf script would stop with an exception instead.
    Called from any thread; reads the whole file.
    """
    if dtype not in _ACCURACY_DTYPES:
        raise InvalidArgument(
            f"dtype {dtype!r} is not a response type; use one of {', '.join(_ACCURACY_DTYPES)}")
    np_dtype = _ACCURACY_DTYPES[dtype]
    p = Path(path)
    try:
        with p.open("r", encoding="utf-8") as f:
            entries = json.load(f)
    except OSError as exc:
        raise DataError(f"cannot read accuracy log {str(p)!r}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"accuracy log {str(p)!r} is not JSON: {exc}") from exc
    if not isinstance(entries, list):
        raise DataError(f"accuracy log {str(p)!r}: expected a JSON list of entries")
    if not entries:
        raise DataError(
            f"accuracy log {str(p)!r} has no entries; was the run in accuracy mode?")
    n_labels = len(labels)
    seen: set[int] = set()
    good = 0
    for i, entry in enumerate(entries):
        try:
            idx = int(entry["qsl_idx"])
            data_hex = entry["data"]
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"accuracy log {str(p)!r} entry {i}: expected 'qsl_idx' and 'data', "
                f"got {entry!r}") from exc
        if idx in seen:
            continue
        seen.add(idx)
        if not isinstance(labels, Mapping) and not 0 <= idx < n_labels:
            raise DataError(
                f"accuracy log {str(p)!r} entry {i}: qsl_idx {idx} is outside the "
                f"{n_labels} labels given; pass the labels of the dataset the run used")
        try:
            expected = int(labels[idx])
        except KeyError as exc:
            raise DataError(f"accuracy log {str(p)!r}: no label for qsl_idx {idx}") from exc
        try:
            data = np.frombuffer(bytes.fromhex(data_hex), np_dtype)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"accuracy log {str(p)!r} entry {i}: 'data' is not hex of {dtype} values "
                f"({exc}); pass the dtype the SUT answers with") from exc
        if data.size == 0 or not np.isfinite(data[0]):
            continue
        if int(data[0]) == expected:
            good += 1
    total = len(seen)
    return AccuracyResult(good=good, total=total, accuracy=100.0 * good / total,
                          entries=len(entries), dtype=dtype)


# --------------------------------------------------------------------------------------------
# response accounting: LoadGen's own logs as the oracle for "every response exactly once"


@dataclasses.dataclass
class ResponseAccount:
    """The responses of one test as LoadGen logged them.

    ``issued`` is what LoadGen issued (``result_query_count``, in accuracy mode
    ``generated_query_count``, × ``generated_samples_per_query`` in
    ``mlperf_log_detail.txt``); ``logged`` the entries of
    ``mlperf_log_accuracy.json`` (each carries the ``seq_id`` LoadGen gave the sample).
    ``complete`` says whether LoadGen logs every response (accuracy mode, or performance mode
    with ``accuracy_log_probability = 1``); only then can ``missing`` (issued sequence ids
    with no response) be counted. ``duplicates`` are sequence ids logged more than once,
    ``foreign`` ids outside ``0 .. issued-1``, ``empty`` responses without data (a SUT's
    answer for a failed sample).
    """

    issued: int
    logged: int
    distinct: int
    duplicates: int
    foreign: int
    missing: int | None
    empty: int
    complete: bool

    @property
    def ok(self) -> bool:
        """No duplicate or foreign response, and (with a complete log) none missing."""
        return self.duplicates == 0 and self.foreign == 0 and not self.missing

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok}


def account_responses(output_dir: str | os.PathLike[str]) -> ResponseAccount:
    """Count a finished test's responses from LoadGen's detail and accuracy logs in
    ``output_dir`` (see :class:`ResponseAccount`). Raises DataError when a log is missing or
    unreadable. To account for every response of a performance run, set the settings'
    ``accuracy_log_probability = 1.0`` (it costs a JSON line per response)."""
    out = Path(output_dir)
    detail = parse_detail(out / "mlperf_log_detail.txt").values
    mode = str(detail.get("effective_test_mode", ""))
    # Performance mode: LoadGen may generate more queries than it issues (SingleStream and
    # MultiStream stop at their minimum duration and count); result_query_count is what ran.
    count_key = "generated_query_count" if mode == "AccuracyOnly" else "result_query_count"
    try:
        issued = int(detail[count_key]) * int(detail["generated_samples_per_query"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{out / 'mlperf_log_detail.txt'}: no {count_key} / "
                        "generated_samples_per_query; did the test run to its end?") from None
    path = out / "mlperf_log_accuracy.json"
    try:
        with path.open(encoding="utf-8") as f:
            entries = json.load(f)
    except OSError as exc:
        raise DataError(f"cannot read accuracy log {str(path)!r}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"accuracy log {str(path)!r} is not JSON: {exc}") from exc
    seen: set[int] = set()
    duplicates = foreign = empty = 0
    for entry in entries:
        seq = int(entry["seq_id"])
        if seq in seen:
            duplicates += 1
            continue
        seen.add(seq)
        if not 0 <= seq < issued:
            foreign += 1
        if not entry.get("data"):
            empty += 1
    probability = float(detail.get("effective_accuracy_log_probability") or 0.0)
    complete = mode == "AccuracyOnly" or probability >= 1.0
    in_range = len(seen) - foreign
    return ResponseAccount(issued=issued, logged=len(entries), distinct=len(seen),
                           duplicates=duplicates, foreign=foreign,
                           missing=issued - in_range if complete else None, empty=empty,
                           complete=complete)
