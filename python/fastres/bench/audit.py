"""MLPerf's compliance audits TEST01 and TEST04 for ResNet50, run and verified as the
compliance folder of mlcommons/inference (``compliance/TEST01``, ``compliance/TEST04``, formerly
``compliance/nvidia/...``) defines them.

What each audit is
------------------

* **TEST01** (verify accuracy in performance mode): a performance run with LoadGen's accuracy
  log sampling turned on by ``audit.config``: ``mode = 2`` (PerformanceOnly),
  ``accuracy_log_rng_seed = 720381539243781796`` and ``accuracy_log_sampling_target = 4096``
  (the values of the ResNet50 ``audit.config``, as the published ResNet50 TEST01 logs show
  them, e.g. inference_results_v2.1 ``closed/Dell/compliance/.../resnet50/Offline/TEST01``).
  LoadGen logs each response with probability ``4096 / expected samples``. Two checks:

  1. accuracy (``verify_accuracy.py``): the accuracy run's log is read into ``qsl_idx →
     data`` (first occurrence kept); each entry of the audit run's log whose ``qsl_idx`` is in
     it counts as a match and its first value (decoded in the SUT's response type, the
     script's ``--dtype``) must equal the stored one (two empty responses are equal; an empty
     and a non-empty one are not); the entry then replaces the stored data. PASS when there
     is no mismatch and at least one match.
  2. performance (``verify_performance.py``, which reads the detail logs): both runs VALID,
     the same scenario, in Server the same target latency, and the audit run's score within
     ±10% of the performance run's (±20% for SingleStream at or under 200,000 ns and
     MultiStream at or under 1,600,000 ns). Scores: Offline ``result_samples_per_second``,
     Server ``result_completed_samples_per_sec``, SingleStream ``early_stopping_latency_ss``,
     MultiStream ``early_stopping_latency_ms``.

* **TEST04** (the SUT does not cache results): a performance run that issues the same sample
  for every query (``audit.config``, per scenario: ``mode = 2``,
  ``performance_issue_unique = 0``, ``performance_issue_same = 1``,
  ``performance_issue_same_index = 3``). ``verify_performance.py`` reads the two summaries:
  both VALID, the same scenario, and the audit run no more than 10% faster than the
  performance run: ``test < ref × (1 + threshold)`` on scores where higher is faster (Offline
  samples/s, Server completed samples/s, SingleStream/MultiStream ``1e9 /`` the early-stopping
  latency estimate). The script relaxes the threshold to 20% when the SingleStream score is at
  or under 200,000 or the MultiStream score at or under 1,600,000; it compares the *converted*
  score (1e9 / latency) with those figures, so in practice SingleStream and MultiStream always
  get 20%. fastres applies the script as published and says which threshold it used. The
  script's Server target-latency comparison never fires (its pattern does not match LoadGen's
  line); fastres compares the two target latencies, as TEST01's script does.

Where audit.config goes
-----------------------

LoadGen looks for ``audit.config`` when a test starts (``StartTest``'s ``audit_config_filename``,
``"audit.config"`` relative to the working folder by default) and, if it exists, overrides the
test settings from it. fastres writes the file into the audit run's own folder, passes LoadGen
its absolute path, and deletes it in a ``finally`` whatever happens: it is never written to, or
read from, the working folder, and an ordinary run refuses a folder that still holds one
(:func:`fastres.loadgen.run_test`). That LoadGen read it is checked in ``mlperf_log_detail.txt``
("Found Audit Config file") together with the effective settings it produced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .. import loadgen as flg
from ..errors import DataError, InvalidArgument

__all__ = [
    "AUDITS",
    "AUDIT_CONFIG_NAME",
    "TEST01_ACCURACY_LOG_RNG_SEED",
    "TEST01_ACCURACY_LOG_SAMPLING_TARGET",
    "TEST04_SAME_INDEX",
    "Check",
    "AuditResult",
    "parse_audits",
    "audit_config_text",
    "placed_audit_config",
    "run_audit",
    "check_config_read",
    "verify_test01_accuracy",
    "verify_test01_performance",
    "verify_test04_performance",
    "verify",
]

AUDITS = ("TEST01", "TEST04")
AUDIT_CONFIG_NAME = "audit.config"

#: compliance/.../TEST01/<benchmark>/audit.config: the seed is the same for every benchmark.
TEST01_ACCURACY_LOG_RNG_SEED = 720381539243781796
#: The ResNet50 value (performance sample count 1024, a 4-byte or 8-byte answer per sample).
TEST01_ACCURACY_LOG_SAMPLING_TARGET = 4096
#: compliance/TEST04/audit.config: every query issues this (loaded) sample.
TEST04_SAME_INDEX = 3

_DTYPES = {"byte": np.byte, "float32": np.float32, "int32": np.int32, "int64": np.int64}
_FOUND = "Found Audit Config file"


def parse_audits(text: str | list[str] | None) -> list[str]:
    """``"TEST01,TEST04"`` (any case, ``all``) → the audits in order; InvalidArgument else."""
    if not text:
        return []
    items = text if isinstance(text, list) else [text]
    out: list[str] = []
    for part in ",".join(items).split(","):
        name = part.strip().upper()
        if not name:
            continue
        if name == "ALL":
            names = list(AUDITS)
        elif name in AUDITS:
            names = [name]
        else:
            raise InvalidArgument(f"--audit: unknown audit {part.strip()!r}; choose "
                                  f"{', '.join(AUDITS)} or all")
        out += [n for n in names if n not in out]
    return out


def audit_config_text(test: str) -> str:
    """The ``audit.config`` of ``test`` for ResNet50, in LoadGen's ``key = value`` format."""
    head = ["# fastres: MLPerf compliance " + test + " for resnet50 (mlcommons/inference "
            "compliance/" + test + "); written for one run and deleted after it",
            "# mode: 0 = submission, 1 = accuracy, 2 = performance, 3 = find peak performance"]
    if test == "TEST01":
        body = ["*.*.mode = 2",
                f"*.*.accuracy_log_rng_seed = {TEST01_ACCURACY_LOG_RNG_SEED}",
                f"*.*.accuracy_log_sampling_target = {TEST01_ACCURACY_LOG_SAMPLING_TARGET}"]
    elif test == "TEST04":
        body = []
        for scenario in ("MultiStream", "Offline", "SingleStream", "Server"):
            body += [f"*.{scenario}.mode = 2",
                     f"*.{scenario}.performance_issue_unique = 0",
                     f"*.{scenario}.performance_issue_same = 1",
                     f"*.{scenario}.performance_issue_same_index = {TEST04_SAME_INDEX}"]
    else:
        raise InvalidArgument(f"unknown audit {test!r}; choose one of {', '.join(AUDITS)}")
    return "\n".join(head + body) + "\n"


@contextlib.contextmanager
def placed_audit_config(test: str, run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Write ``test``'s audit.config into ``run_dir`` for the duration of the block and delete
    it afterwards, on any exit (an exception, KeyboardInterrupt). Yields its absolute path."""
    text = audit_config_text(test)
    folder = Path(run_dir).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / AUDIT_CONFIG_NAME
    try:
        path.write_text(text, encoding="utf-8")
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def run_audit(test: str, sut: Any, qsl: Any, settings: Any, audit_dir: str | os.PathLike[str],
              **run_kwargs: Any) -> flg.RunResult:
    """Run one audit test: LoadGen with ``settings`` (those of the performance run it is
    compared with) and ``test``'s audit.config in ``audit_dir``, then check that LoadGen read
    it. The file is gone when this returns or raises. ``run_kwargs`` go to
    :func:`fastres.loadgen.run_test`. Blocks for the whole test."""
    out = flg.prepare_output_dir(audit_dir)
    with placed_audit_config(test, out) as config:
        result = flg.run_test(sut, qsl, settings, out, audit_config=config, **run_kwargs)
    return result


# --------------------------------------------------------------------------------------------
# checks


@dataclasses.dataclass
class Check:
    """One verification step: its name, the verdict, why, and the figures it compared."""

    name: str
    passed: bool
    message: str
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class AuditResult:
    """An audit's verdict for one SUT and scenario: PASS only when every check passed."""

    test: str
    scenario: str | None
    checks: list[Check]
    audit_dir: str

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"test": self.test, "scenario": self.scenario, "passed": self.passed,
                "audit_dir": self.audit_dir, "checks": [c.as_dict() for c in self.checks]}


def check_config_read(test: str, detail_path: str | os.PathLike[str]) -> Check:
    """Did LoadGen read the audit.config (its own message in the detail log) and run with
    the settings it asks for (the ``effective_*`` values)?"""
    path = Path(detail_path)
    if not path.is_file():
        return Check("audit.config read", False, f"no LoadGen detail log {path}")
    detail = flg.parse_detail(path)
    found = any(_FOUND in w for w in detail.warnings)
    v = detail.values
    want: dict[str, Any] = {"effective_test_mode": "PerformanceOnly"}
    if test == "TEST01":
        want.update(effective_accuracy_log_rng_seed=TEST01_ACCURACY_LOG_RNG_SEED,
                    effective_accuracy_log_sampling_target=TEST01_ACCURACY_LOG_SAMPLING_TARGET)
    else:
        want.update(effective_performance_issue_unique=False,
                    effective_performance_issue_same=True,
                    effective_performance_issue_same_index=TEST04_SAME_INDEX)
    wrong = {k: v.get(k) for k, x in want.items() if v.get(k) != x}
    if not found:
        return Check("audit.config read", False,
                     "LoadGen did not report 'Found Audit Config file' in its detail log: the "
                     "audit ran as an ordinary performance run", {"expected": want})
    if wrong:
        return Check("audit.config read", False,
                     f"LoadGen read audit.config but ran with {wrong}, expected {want}",
                     {"expected": want, "effective": wrong})
    return Check("audit.config read", True, "LoadGen found audit.config and applied it",
                 {"effective": {k: v.get(k) for k in want}})


def _read_accuracy_log(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8") as f:
            entries = json.load(f)
    except FileNotFoundError:
        raise DataError(f"accuracy log {path} not found") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"accuracy log {path} is unreadable ({exc})") from None
    if not isinstance(entries, list):
        raise DataError(f"accuracy log {path}: expected a JSON list")
    return entries


def _decode(hex_data: str, dtype: Any) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(hex_data), dtype)


def verify_test01_accuracy(reference_log: str | os.PathLike[str],
                           test_log: str | os.PathLike[str], dtype: str) -> Check:
    """TEST01's accuracy check (``verify_accuracy.py``, its default JSON mode) between the
    accuracy run's ``mlperf_log_accuracy.json`` and the audit run's; ``dtype`` is the SUT's
    response type (the script's ``--dtype``: byte, float32, int32, int64)."""
    if dtype not in _DTYPES:
        raise InvalidArgument(f"dtype {dtype!r}: choose one of {', '.join(_DTYPES)}")
    np_dtype = _DTYPES[dtype]
    try:
        acc = _read_accuracy_log(Path(reference_log))
        perf = _read_accuracy_log(Path(test_log))
        return _compare_accuracy_logs(acc, perf, dtype, np_dtype)
    except DataError as exc:
        return Check("accuracy", False, str(exc))
    except (KeyError, TypeError, ValueError) as exc:  # not LoadGen's entry format
        return Check("accuracy", False, f"an accuracy log entry is malformed "
                                        f"({type(exc).__name__}: {exc}): {reference_log}, "
                                        f"{test_log}")


def _compare_accuracy_logs(acc: list[dict[str, Any]], perf: list[dict[str, Any]], dtype: str,
                           np_dtype: Any) -> Check:
    results: dict[int, str] = {}
    acc_duplicates = acc_mismatch = 0
    for entry in acc:
        idx, data = entry["qsl_idx"], entry["data"]
        if idx in results:
            acc_duplicates += 1
            acc_mismatch += results[idx] != data
        else:
            results[idx] = data
    matched = mismatched = missing = 0
    first_mismatch = None
    for entry in perf:
        idx, data_hex = entry["qsl_idx"], entry["data"]
        if idx in results:
            matched += 1
            now, before = _decode(data_hex, np_dtype), _decode(results[idx], np_dtype)
            if now.size == 0 or before.size == 0:
                bad = now.size != before.size
            else:
                bad = now[0] != before[0]
            if bad:
                mismatched += 1
                if first_mismatch is None:
                    first_mismatch = {"qsl_idx": idx, "accuracy_run": before[:1].tolist(),
                                      "audit_run": now[:1].tolist()}
        else:
            missing += 1
        results[idx] = data_hex
    figures = {"accuracy_log_entries": len(acc), "accuracy_log_duplicate_keys": acc_duplicates,
               "accuracy_log_data_mismatch": acc_mismatch, "audit_log_entries": len(perf),
               "audit_log_qsl_idx_match": matched, "audit_log_data_mismatch": mismatched,
               "missing_qsl_idxs": missing, "dtype": dtype}
    if mismatched:
        figures["first_mismatch"] = first_mismatch
        return Check("accuracy", False,
                     f"{mismatched} of {matched} responses logged in performance mode differ "
                     f"from the accuracy run (first: {first_mismatch})", figures)
    if not matched:
        return Check("accuracy", False,
                     f"no response logged in performance mode could be compared "
                     f"({len(perf)} logged; was audit.config read?)", figures)
    return Check("accuracy", True,
                 f"{matched} responses logged in performance mode match the accuracy run",
                 figures)


_TEST01_SCORE = {"Offline": "result_samples_per_second",
                 "SingleStream": "early_stopping_latency_ss",
                 "MultiStream": "early_stopping_latency_ms",
                 "Server": "result_completed_samples_per_sec"}


def _threshold(scenario: str, ref_score: float) -> float:
    if (scenario == "SingleStream" and ref_score <= 200000) or \
            (scenario == "MultiStream" and ref_score <= 1600000):
        return 0.20
    return 0.10


def verify_test01_performance(reference_detail: str | os.PathLike[str],
                              test_detail: str | os.PathLike[str]) -> Check:
    """TEST01's performance check (``verify_performance.py``) on the performance run's and the
    audit run's ``mlperf_log_detail.txt``."""
    logs = {}
    for role, path in (("performance run", Path(reference_detail)),
                       ("audit run", Path(test_detail))):
        if not path.is_file():
            return Check("performance", False, f"{role}: no LoadGen detail log {path}")
        d = flg.parse_detail(path).values
        scenario = d.get("effective_scenario")
        key = _TEST01_SCORE.get(scenario)
        if key is None or d.get(key) is None:
            return Check("performance", False, f"{role}: no score ({key or 'scenario'}) in {path}")
        if d.get("result_validity") != "VALID":
            return Check("performance", False, f"the {role} is {d.get('result_validity')} "
                         f"({path}); TEST01 compares VALID runs only",
                         {"result_validity": d.get("result_validity")})
        logs[role] = (scenario, float(d[key]), d.get("effective_target_latency_ns"), key)
    (ref_sc, ref, ref_lat, key), (test_sc, test, test_lat, _) = logs.values()
    figures: dict[str, Any] = {"score": key, "performance_run": ref, "audit_run": test}
    if ref_sc != test_sc:
        return Check("performance", False, f"scenarios differ ({ref_sc} vs {test_sc})", figures)
    if ref_sc == "Server" and ref_lat != test_lat:
        return Check("performance", False, f"Server target latency differs ({ref_lat} vs "
                     f"{test_lat} ns)", figures)
    t = _threshold(ref_sc, ref)
    figures.update(threshold=t, ratio=test / ref if ref else math.inf)
    ok = ref * (1 - t) <= test <= ref * (1 + t)
    rel = f"{100 * (test / ref - 1):+.1f}%" if ref else "n/a"
    return Check("performance", ok,
                 f"audit run {key} {test:,.6g} vs {ref:,.6g} ({rel}; allowed ±{100 * t:g}%)",
                 figures)


def _test04_score(path: Path) -> tuple[str | None, float | None, str | None, str | None]:
    """(scenario, score where higher is faster, target latency, problem) of a summary, read as
    TEST04's verify_performance.py reads it."""
    if not path.is_file():
        return None, None, None, f"no LoadGen summary {path}"
    s = flg.parse_summary(path)
    if s.result == "INVALID":
        return s.scenario, None, None, f"{path} is INVALID"
    score: float | None = None
    if s.scenario in ("SingleStream", "MultiStream"):
        pattern = r"Early stopping (90th|90\.0th|99\.9th) percentile estimate" \
            if s.scenario == "SingleStream" else r"Early stopping (99th|99\.0th) percentile estimate"
        for line in s.early_stopping:
            if re.match(pattern, line):
                latency = float(line.split(": ", 1)[1])
                score = 1e9 / latency if latency else math.inf
    elif s.scenario == "Server":
        score = _number(s.raw.get("Completed samples per second"))
    elif s.scenario == "Offline":
        score = _number(s.raw.get("Samples per second"))
    if score is None:
        return s.scenario, None, None, f"{path}: no {s.scenario} score"
    return s.scenario, score, s.test_parameters.get("target_latency (ns)"), None


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def verify_test04_performance(reference_summary: str | os.PathLike[str],
                              test_summary: str | os.PathLike[str]) -> Check:
    """TEST04's check (``verify_performance.py``) on the performance run's and the audit
    run's ``mlperf_log_summary.txt``: the same-sample run must not be more than the threshold
    faster."""
    ref_sc, ref, ref_lat, why = _test04_score(Path(reference_summary))
    if why:
        return Check("performance", False, f"performance run: {why}")
    test_sc, test, test_lat, why = _test04_score(Path(test_summary))
    if why:
        return Check("performance", False, f"audit run: {why}")
    assert ref is not None and test is not None
    figures: dict[str, Any] = {"score": "samples/s" if ref_sc in ("Offline", "Server")
                               else "1e9 / early-stopping latency estimate (ns)",
                               "performance_run": ref, "audit_run": test}
    if ref_sc != test_sc:
        return Check("performance", False, f"scenarios differ ({ref_sc} vs {test_sc})", figures)
    if ref_sc == "Server" and ref_lat != test_lat:
        return Check("performance", False, f"Server target latency differs ({ref_lat} vs "
                     f"{test_lat} ns)", figures)
    t = _threshold(ref_sc, ref)
    figures.update(threshold=t, ratio=test / ref if ref else math.inf)
    ok = test < ref * (1 + t)
    rel = f"{100 * (test / ref - 1):+.1f}%" if ref else "n/a"
    return Check("performance", ok,
                 f"same-sample run {test:,.6g} vs {ref:,.6g} ({rel}; at most "
                 f"+{100 * t:g}% allowed)", figures)


def verify(test: str, *, performance_dir: str | os.PathLike[str],
           audit_dir: str | os.PathLike[str], accuracy_dir: str | os.PathLike[str] | None = None,
           dtype: str = "float32") -> AuditResult:
    """Verify an audit run in ``audit_dir`` against the performance run in
    ``performance_dir`` (and, for TEST01, the accuracy run in ``accuracy_dir``, whose
    responses are ``dtype``) by the published rules; every check is reported."""
    if test not in AUDITS:
        raise InvalidArgument(f"unknown audit {test!r}; choose one of {', '.join(AUDITS)}")
    perf, audit = Path(performance_dir), Path(audit_dir)
    checks = [check_config_read(test, audit / "mlperf_log_detail.txt")]
    if test == "TEST01":
        if accuracy_dir is None:
            raise InvalidArgument("TEST01 compares with an accuracy run: pass accuracy_dir")
        checks.append(verify_test01_accuracy(Path(accuracy_dir) / "mlperf_log_accuracy.json",
                                             audit / "mlperf_log_accuracy.json", dtype))
        checks.append(verify_test01_performance(perf / "mlperf_log_detail.txt",
                                                audit / "mlperf_log_detail.txt"))
    else:
        checks.append(verify_test04_performance(perf / "mlperf_log_summary.txt",
                                                audit / "mlperf_log_summary.txt"))
    scenario = None
    detail = audit / "mlperf_log_detail.txt"
    if detail.is_file():
        scenario = flg.parse_detail(detail).values.get("effective_scenario")
    return AuditResult(test=test, scenario=scenario, checks=checks, audit_dir=str(audit))
