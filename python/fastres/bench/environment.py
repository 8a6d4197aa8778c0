"""What the bench ran on: CPU, memory, GPUs and the versions of everything that matters.

Every probe is best-effort and quick (no package is imported just to read its version when the
distribution metadata says it); a missing component is ``None``, never an error.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from typing import Any

__all__ = ["capture"]


def _dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _dali_version() -> str | None:
    for dist in metadata.distributions():
        name = (dist.metadata.get("Name") or "").lower()
        if name.startswith("nvidia-dali"):
            return f"{dist.version} ({name})"
    return None


def _cpu() -> dict[str, Any]:
    out: dict[str, Any] = {"cpu": platform.processor() or None, "cores": os.cpu_count()}
    try:
        out["cores_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        out["cores_usable"] = os.cpu_count()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    out["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        out["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        out["memory_gib"] = None
    return out


def _nvidia_smi() -> list[dict[str, str]] | None:
    """GPUs as nvidia-smi lists them (name, memory, driver), or None without nvidia-smi."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, "--query-gpu=name,memory.total,driver_version",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    gpus = []
    for line in proc.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "memory": parts[1], "driver": parts[2]})
    return gpus


def capture() -> dict[str, Any]:
    """The environment as a flat JSON-ready dict (see the module docstring)."""
    import fastres

    env: dict[str, Any] = {}
    env.update(_cpu())
    env["platform"] = platform.platform()
    env["python"] = platform.python_version()
    env["fastres"] = fastres.__version__
    try:
        info = fastres.build_info()
    except Exception:  # noqa: BLE001 - best effort
        info = {}
    cuda = info.get("cuda") or {}
    smi = _nvidia_smi()
    env["gpus"] = ([g["name"] for g in smi] if smi is not None
                   else [d.get("name") for d in cuda.get("devices", [])])
    if smi:
        env["gpu_details"] = smi
    env["cuda_status"] = cuda.get("status")
    env["fastres_with_cuda"] = info.get("with_cuda")
    env["fastres_with_tensorrt"] = info.get("with_tensorrt")
    env["onnxruntime"] = _dist_version("onnxruntime", "onnxruntime-gpu")
    env["tensorrt"] = info.get("tensorrt_version") or _dist_version("tensorrt", "tensorrt-cu12",
                                                                    "tensorrt-cu13")
    env["dali"] = _dali_version()
    env["mlcommons-loadgen"] = _dist_version("mlcommons-loadgen")
    env["numpy"] = _dist_version("numpy")
    env["opencv"] = _dist_version("opencv-python-headless", "opencv-python")
    env["onnx"] = _dist_version("onnx")
    env["matplotlib"] = _dist_version("matplotlib")
    return env
