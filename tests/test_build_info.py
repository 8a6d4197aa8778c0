from __future__ import annotations

import shutil

import pytest

import fastres
from fastres import _core, errors


def test_build_info_shape_and_versions():
    info = fastres.build_info()
    assert info["fastres"] == fastres.__version__ == info["core"]
    assert isinstance(info["with_cuda"], bool)
    assert isinstance(info["with_tensorrt"], bool)
    cuda = info["cuda"]
    assert cuda["compiled"] is info["with_cuda"]
    assert isinstance(cuda["devices"], list)
    # With no device, the reason is stated; with devices, each has a name.
    if not cuda["devices"]:
        assert cuda["status"]
    for dev in cuda["devices"]:
        assert dev["name"] and dev["total_memory"] > 0
    assert set(info["dali"]) >= {"importable", "version"}


def test_tensorrt_version_only_when_compiled_in():
    info = fastres.build_info()
    assert (info["tensorrt_version"] is not None) == info["with_tensorrt"]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc: the CPU-only build is expected")
def test_cuda_compiled_in_where_nvcc_exists_unless_disabled(monkeypatch):
    import os

    if os.environ.get("FASTRES_WITH_CUDA", "AUTO").upper() == "OFF":
        assert fastres.build_info()["with_cuda"] is False
    else:
        assert fastres.build_info()["with_cuda"] is True
        assert fastres.build_info()["cuda"]["toolkit_version"]


@pytest.mark.parametrize(
    "kind, cls",
    [
        ("InvalidArgument", errors.InvalidArgument),
        ("EngineError", errors.EngineError),
        ("CudaError", errors.CudaError),
        ("Unavailable", errors.Unavailable),
        ("Error", errors.FastresError),
    ],
)
def test_cpp_errors_become_fastres_errors(kind, cls):
    with pytest.raises(cls, match="the message"):
        _core._raise_for_test(kind, "the message")


def test_error_hierarchy_is_catchable_as_builtin_types():
    assert issubclass(errors.InvalidArgument, ValueError)
    assert issubclass(errors.DataError, errors.InvalidArgument)
    assert issubclass(errors.Unavailable, ImportError)
    assert issubclass(errors.EngineError, errors.FastresError)
