#!/usr/bin/env bash
# The device check of issue 5: the ONE script a session with a GPU machine runs there.
#
#   bash bench/device_check.sh            (from anywhere; it works in the repository root)
#
# On the device machine (CUDA 13, PyTorch, CMake, pybind11, scikit-build-core; no network, no
# TensorRT, no DALI) it:
#   1. checks the machine (a GPU, nvcc, the Python packages the build and tests need) and stops at
#      once, saying what is missing, when something is;
#   2. installs any wheels carried in .whl/ (mlcommons-loadgen: fetch it here first with
#      `bash bench/device_wheels.sh`, then run this script with carry=[".whl"]);
#   3. builds fastres with FASTRES_WITH_CUDA=ON into a private folder (the image's Python
#      environment is not touched) and checks that the build sees the GPU;
#   4. runs `pytest -m gpu` over the test files that hold gpu tests (without mlperf_loadgen, those
#      that do not need it) and fails when a gpu test skips there for want of a device, then the
#      CPU kernel tests;
#   5. runs bench/kernels_bench.py (GB/s of the kernels against a device-to-device copy and
#      their host twins) and bench/executor_gpu.py (the executor's CUDA pipeline with the
#      TimedEngine against its ideal, and the PyTorch ResNet50 through the native SUT against
#      the reference SUT, under LoadGen);
#   6. writes $OUT/device_check.json: every step's status and time, the test counts and the
#      benchmark's figures, and "status": "pass" or "fail" (with the step that failed).
# Steps 1-3 stop the script on failure; tests and benchmarks all run, and any failure fails it.
# Budget: every step has its own timeout and all of them share one deadline,
# DEVICE_CHECK_BUDGET_S (default 420 s, so the whole check ends inside 8 minutes); a step that
# would start with under 15 s left fails as "out of time". Expected on an H200 machine: about
# 1 minute to build, well under a minute for the tests and the benchmark.
#
# Files under $OUT (at most 8; default /tmp/fastres-device-check): device_check.json, env.txt,
# build.log, pytest.log, bench.log, kernels_bench.json, and executor_gpu.json when that runs.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
OUT=${OUT:-/tmp/fastres-device-check}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/fastres-check.XXXXXX)
SITE=$WORK/site
STEPS=$WORK/steps.tsv
PY=${PYTHON:-python3}
T0=$(date +%s)
FAILED=""
BUDGET=${DEVICE_CHECK_BUDGET_S:-420}
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
: >"$STEPS"

log() { echo "device_check [$(($(date +%s) - T0)) s]: $*"; }

write_summary() {
  "$PY" - "$STEPS" "$OUT" "$WORK" "$FAILED" "$(($(date +%s) - T0))" <<'PY' || echo "device_check: could not write device_check.json" >&2
import json, os, subprocess, sys
import xml.etree.ElementTree as ET
steps_file, out, work, failed, total = sys.argv[1:6]
steps = []
for line in open(steps_file):
    name, rc, secs, note = (line.rstrip("\n").split("\t") + [""])[:4]
    steps.append({"step": name, "rc": int(rc), "seconds": int(secs), "note": note or None})
def junit(path):
    if not os.path.exists(path):
        return None
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None
try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip() or None
except Exception:
    commit = None
summary = {
    "status": "fail" if failed else "pass",
    "failed_step": failed or None,
    "seconds": int(total),
    "commit": commit,
    "steps": steps,
    "pytest_gpu": junit(os.path.join(work, "gpu.xml")),
    "pytest_kernels_cpu": junit(os.path.join(work, "cpu.xml")),
    "kernels_bench": load("kernels_bench.json"),
    "executor_gpu": load("executor_gpu.json"),
}
json.dump(summary, open(os.path.join(out, "device_check.json"), "w"), indent=2)
print(f"device_check: {summary['status']}" + (f" (failed: {failed})" if failed else "") + f", {total} s; {out}/device_check.json")
PY
}
trap write_summary EXIT

# run_step NAME TIMEOUT_S LOGFILE COMMAND...: runs COMMAND with a timeout, appending to LOGFILE,
# records the step; returns COMMAND's status (124: timed out).
run_step() {
  local name=$1 limit=$2 logfile=$3
  shift 3
  local t=$(date +%s) rc note=""
  local left=$((BUDGET - (t - T0)))
  if [ "$left" -lt 15 ]; then
    printf '%s\t%s\t%s\t%s\n' "$name" 124 0 "out of time: the ${BUDGET} s budget is spent" >>"$STEPS"
    log "step '$name' not run: the ${BUDGET} s budget is spent"
    FAILED=${FAILED:+$FAILED, }$name
    return 124
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  log "$name (limit ${limit} s)"
  echo "===== $name: $*" >>"$logfile"
  timeout --kill-after=10 "$limit" "$@" >>"$logfile" 2>&1
  rc=$?
  [ "$rc" -eq 124 ] && note="timed out after ${limit} s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - t))" "$note" >>"$STEPS"
  if [ "$rc" -ne 0 ]; then
    log "step '$name' FAILED (exit $rc${note:+, $note}); last lines of $(basename "$logfile"):"
    tail -n 25 "$logfile" | sed 's/^/    /'
    FAILED=${FAILED:+$FAILED, }$name
  fi
  return "$rc"
}

# stop MESSAGE: a prerequisite is missing; record it and end now.
stop() {
  printf '%s\t%s\t%s\t%s\n' "preflight" 1 "$(($(date +%s) - T0))" "$1" >>"$STEPS"
  FAILED=preflight
  log "cannot run: $1"
  exit 1
}

# ---------------------------------------------------------------- 1. the machine
command -v "$PY" >/dev/null || stop "no $PY on PATH (set PYTHON=/path/to/python3)"
command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q GPU || stop "no GPU visible (nvidia-smi -L lists none)"
if ! command -v nvcc >/dev/null; then
  for d in /usr/local/cuda/bin /usr/local/cuda-13.0/bin; do [ -x "$d/nvcc" ] && export PATH=$d:$PATH && break; done
fi
command -v nvcc >/dev/null || stop "nvcc not found (PATH, /usr/local/cuda/bin): the CUDA build needs it"
missing=$("$PY" - <<'PY'
import importlib.util
need = ["numpy", "pybind11", "scikit_build_core", "pytest", "hypothesis", "cv2", "torch"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
PY
)
[ -z "$missing" ] || stop "Python packages missing for $PY: $missing (carry them as wheels in .whl/)"
command -v cmake >/dev/null || "$PY" -c "import cmake" 2>/dev/null || stop "cmake not found (PATH or the cmake Python package)"
{
  echo "date: $(date -u +%FT%TZ)"; echo "host: $(uname -a)"; echo "cores: $(nproc)"
  nvidia-smi 2>&1 | head -n 15
  nvcc --version 2>&1 | tail -n 2
  echo "python: $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  "$PY" -m pip list 2>/dev/null | grep -i -E '^(torch|numpy|pybind11|scikit.build.core|cmake|ninja|pytest|hypothesis|cupy|mlcommons)' || true
} >"$OUT/env.txt" 2>&1
log "machine: $(nvidia-smi -L | head -n 1); $(nvcc --version | tail -n 1)"

# ---------------------------------------------------------------- 2. carried wheels
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
if compgen -G ".whl/*.whl" >/dev/null; then
  run_step "carried-wheels" 120 "$OUT/build.log" "$PY" -m pip install -q --no-index --no-deps --no-compile \
    --target "$SITE" .whl/*.whl || exit 1
fi

# ---------------------------------------------------------------- 3. build with CUDA
export CMAKE_BUILD_PARALLEL_LEVEL=$(nproc)
run_step "build" 240 "$OUT/build.log" "$PY" -m pip install --no-build-isolation --no-deps --no-index --upgrade \
  --target "$SITE" -Cbuild-dir="$WORK/build" -Ccmake.define.FASTRES_WITH_CUDA=ON \
  -Ccmake.define.FASTRES_WITH_TENSORRT=OFF "$ROOT" || exit 1
run_step "import" 30 "$OUT/build.log" "$PY" - <<'PY' || exit 1
import json, fastres
info = fastres.build_info()
print(json.dumps({k: info[k] for k in ("fastres", "with_cuda", "compiler", "cuda")}, indent=1))
assert fastres.__file__.startswith(__import__("os").environ["PYTHONPATH"].split(":")[0]), f"imported {fastres.__file__}, not the fresh build"
assert info["with_cuda"], "the build has no CUDA (FASTRES_WITH_CUDA=ON was not applied?)"
assert info["cuda"]["devices"], f"fastres sees no CUDA device: {info['cuda']['status']}"
PY

# ---------------------------------------------------------------- 4. tests
# Only the files that hold gpu tests are collected (a module that cannot be imported here, for a
# package the image lacks, would otherwise fail the whole run); without mlperf_loadgen, only those
# that do not need it.
mapfile -t gpu_targets < <(grep -l "pytest.mark.gpu" tests/test_*.py)
if ! "$PY" -c "import mlperf_loadgen" 2>/dev/null; then
  mapfile -t gpu_targets < <(printf '%s\n' "${gpu_targets[@]}" |
    xargs grep -L -E "mlperf_loadgen|fastres\.loadgen|from fastres import loadgen|fastres\.sut")
  echo "mlperf_loadgen is not importable: gpu tests of ${gpu_targets[*]} only (carry its wheel in .whl/ for all)" >>"$OUT/pytest.log"
fi
[ "${#gpu_targets[@]}" -gt 0 ] || gpu_targets=(tests/test_kernels.py)
run_step "pytest-gpu" 120 "$OUT/pytest.log" "$PY" -m pytest -p no:cacheprovider -q -rs -m gpu "${gpu_targets[@]}" \
  --junitxml="$WORK/gpu.xml"
"$PY" - "$WORK/gpu.xml" >>"$OUT/pytest.log" 2>&1 <<'PY' || { log "gpu tests skipped for want of a device, or none ran (see pytest.log)"; FAILED=${FAILED:+$FAILED, }pytest-gpu-skips; printf 'pytest-gpu-skips\t1\t0\tgpu tests skipped for want of a device, or none ran\n' >>"$STEPS"; }
# On a GPU machine no gpu test may skip for want of a device (tests/conftest.py's reason); other
# skips (an optional package the image lacks, such as DALI) are listed, not failed.
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
s = root if root.tag == "testsuite" else root.find("testsuite")
tests = int(s.get("tests", 0))
skips = [(c.get("classname", "") + "::" + c.get("name", ""), k.get("message", ""))
         for c in s.iter("testcase") for k in c.findall("skipped")]
no_device = [t for t, m in skips if "no CUDA device" in m]
print(f"gpu tests: {tests} collected, {len(skips)} skipped, {len(no_device)} of them for want of a device")
for t, m in skips:
    print(f"  skipped {t}: {m}")
sys.exit(0 if tests > 0 and not no_device else 1)
PY
run_step "pytest-kernels-cpu" 60 "$OUT/pytest.log" "$PY" -m pytest -p no:cacheprovider -q -rs -m "not gpu" \
  tests/test_kernels.py --junitxml="$WORK/cpu.xml"

# ---------------------------------------------------------------- 5. benchmarks
run_step "kernels-bench" 120 "$OUT/bench.log" "$PY" bench/kernels_bench.py --json "$OUT/kernels_bench.json"
if [ -f bench/executor_gpu.py ]; then
  run_step "executor-gpu" 120 "$OUT/bench.log" "$PY" bench/executor_gpu.py --json "$OUT/executor_gpu.json"
fi

[ -z "$FAILED" ]
