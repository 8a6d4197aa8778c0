"""The C++ SDK: installs fastres's headers, static library and CMake package into a fresh
prefix, builds examples/embed against it with find_package(fastres), and runs it.
Skips, loudly, where cmake or a C++ compiler is missing: the SDK is then NOT checked."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "embed"


def _cxx_compiler() -> str | None:
    cxx = os.environ.get("CXX")
    if cxx:
        return shutil.which(cxx)
    return next((p for p in map(shutil.which, ("c++", "g++", "clang++")) if p), None)


@pytest.mark.slow
def test_embed_example_builds_against_the_installed_sdk_and_runs(tmp_path: Path) -> None:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake not found: the C++ SDK and examples/embed were NOT checked (pip install cmake ninja)")
    if _cxx_compiler() is None:
        pytest.skip("no C++ compiler (c++, g++, clang++ or $CXX): the C++ SDK and examples/embed were NOT checked")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    sdk_build, prefix, embed_build = tmp_path / "sdk-build", tmp_path / "prefix", tmp_path / "embed-build"

    def run(*cmd: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        args = [str(c) for c in cmd]
        result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, (
            f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
        )
        return result

    run(cmake, "-S", ROOT, "-B", sdk_build, *generator, "-DCMAKE_BUILD_TYPE=Release",
        "-DFASTRES_WITH_CUDA=OFF", "-DFASTRES_WITH_TENSORRT=OFF")
    run(cmake, "--build", sdk_build, "-j", "2")
    run(cmake, "--install", sdk_build, "--prefix", prefix, "--component", "sdk")
    config_dir = prefix / "lib" / "cmake" / "fastres"
    for installed in (config_dir / "fastresConfig.cmake", config_dir / "fastresConfigVersion.cmake",
                      prefix / "include" / "fastres" / "executor.hpp",
                      prefix / "include" / "fastres" / "engines" / "null_engine.hpp"):
        assert installed.is_file(), f"the sdk component did not install {installed.relative_to(prefix)}"

    run(cmake, "-S", EXAMPLE, "-B", embed_build, *generator, "-DCMAKE_BUILD_TYPE=Release",
        f"-DCMAKE_PREFIX_PATH={prefix}")
    # The package found must be the one just installed, not one elsewhere on the system.
    cache = (embed_build / "CMakeCache.txt").read_text()
    assert f"fastres_DIR:PATH={config_dir}" in cache, [l for l in cache.splitlines() if "fastres_DIR" in l]
    run(cmake, "--build", embed_build, "-j", "2")

    result = run(embed_build / "embed", timeout=60)
    assert "embed: OK: every sample completed exactly once with the right answer" in result.stdout, result.stdout
    assert "embed: byte-sum engine: 600 samples completed" in result.stdout, result.stdout
    assert "embed: null engine: 600 samples completed" in result.stdout, result.stdout
