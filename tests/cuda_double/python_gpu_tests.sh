#!/usr/bin/env bash
# The Python gpu tests on the CPU: builds fastres._core against the CUDA runtime double
# (FASTRES_PYTHON_CUDA_DOUBLE=ON, build/pydouble), puts it beside a copy of python/fastres in a
# temporary folder, and runs `pytest -m gpu` over the executor's CUDA-path tests with the
# double's devices. What needs a real GPU stack (PyTorch's or CuPy's CUDA) skips, saying so.
# Called by .ci/run; needs cmake, ninja, pybind11 and the CUDA headers, not a GPU or nvcc.
#
#   bash tests/cuda_double/python_gpu_tests.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B build/pydouble "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DFASTRES_BUILD_TESTS=ON \
  -DFASTRES_BUILD_BENCH=OFF -DFASTRES_WITH_CUDA=OFF -DFASTRES_WITH_TENSORRT=OFF -DFASTRES_BUILD_PYTHON=ON \
  -DFASTRES_PYTHON_CUDA_DOUBLE=ON -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" \
  -DPython_EXECUTABLE="$(command -v "$PY")" >/dev/null
cmake --build build/pydouble -j "$(nproc 2>/dev/null || echo 2)" --target _core
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
cp -r python/fastres "$site/fastres"
rm -f "$site"/fastres/_core*.so
cp build/pydouble/_core*.so "$site/fastres/"
export FASTRES_FAKE_CUDA_DEVICES=${FASTRES_FAKE_CUDA_DEVICES:-2}
PYTHONPATH="$site" "$PY" - <<'PY'
import fastres
info = fastres.build_info()
assert info["with_cuda"] and info["cuda"]["devices"], info
assert "double" in info["cuda"]["devices"][0]["name"], info["cuda"]["devices"][0]
print("fastres._core over the CUDA double:", [d["name"] for d in info["cuda"]["devices"]])
PY
PYTHONPATH="$site" "$PY" -m pytest -p no:cacheprovider -q -rs -m gpu tests/test_executor_cuda.py "$@"
