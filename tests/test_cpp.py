"""Runs the C++ unit tests (tests/cpp) through ctest, building build/cpp-tests first.
Skips, loudly, where cmake is missing: the C++ tests are then NOT run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "cpp-tests"


@pytest.mark.slow
def test_cpp_unit_tests_pass_under_ctest():
    cmake, ctest = shutil.which("cmake"), shutil.which("ctest")
    if cmake is None or ctest is None:
        pytest.skip("cmake/ctest not found: the C++ unit tests in tests/cpp were NOT run (pip install cmake ninja)")
    generator = ["-G", "Ninja"] if shutil.which("ninja") and not (BUILD / "CMakeCache.txt").exists() else []
    jobs = str(os.cpu_count() or 2)

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)

    steps = [
        (cmake, "-S", str(ROOT), "-B", str(BUILD), *generator, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
         "-DFASTRES_BUILD_TESTS=ON", "-DFASTRES_WITH_CUDA=OFF", "-DFASTRES_WITH_TENSORRT=OFF"),
        (cmake, "--build", str(BUILD), "-j", jobs),
        (ctest, "--test-dir", str(BUILD), "--output-on-failure", "-j", jobs),
    ]
    for cmd in steps:
        result = run(*cmd)
        assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert "100% tests passed" in result.stdout, result.stdout[-3000:]
