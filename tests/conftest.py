"""Shared test setup. GPU tests carry the ``gpu`` marker and are skipped, loudly, without a
CUDA device (this machine and CI have none; bench/device_check.sh runs them on one)."""

from __future__ import annotations

import pytest


def _cuda_device_count() -> int:
    try:
        import fastres

        return len(fastres.build_info()["cuda"]["devices"])
    except Exception:
        return 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_device_count() > 0:
        return
    skip = pytest.mark.skip(reason="gpu test: no CUDA device on this machine (run bench/device_check.sh on one)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
