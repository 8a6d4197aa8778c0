"""MLPerf Inference's published ResNet50 results that the report sets beside a run.

Closed division, datacenter category, each figure read from the submission's own
``mlperf_log_summary.txt`` in mlcommons/inference_results_<round> (path in ``source``): Offline
is "Samples per second", Server the scheduled samples per second of the VALID run (LoadGen's
Server metric). These are official, 600-second, audited results on GPUs with TensorRT; they are
never mixed with this run's figures, only shown beside them, normalised per accelerator.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PUBLISHED", "per_accelerator"]

PUBLISHED: tuple[dict[str, Any], ...] = (
    {
        "round": "MLPerf Inference v2.1", "submitter": "Dell", "system": "PowerEdge XE8545",
        "accelerator": "NVIDIA A100-SXM-80GB", "accelerators": 4, "software": "TensorRT",
        "Offline": 166_664.0, "Server": 150_027.30,
        "source": "mlcommons/inference_results_v2.1 closed/Dell/results/"
                  "XE8545_A100_SXM_80GBx4_TRT/resnet50/{Offline,Server}/performance/run_1",
    },
    {
        "round": "MLPerf Inference v2.1", "submitter": "Dell", "system": "PowerEdge R750xa",
        "accelerator": "NVIDIA A100-PCIe-80GB", "accelerators": 4, "software": "TensorRT",
        "Offline": 158_101.0, "Server": 147_261.34,
        "source": "mlcommons/inference_results_v2.1 closed/Dell/results/"
                  "R750xa_A100_PCIE_80GBx4_TRT/resnet50/{Offline,Server}/performance/run_1",
    },
    {
        "round": "MLPerf Inference v4.1", "submitter": "NVIDIA", "system": "H200-SXM-141GBx8_TRT",
        "accelerator": "NVIDIA H200-SXM-141GB", "accelerators": 8, "software": "TensorRT",
        "Offline": 756_960.0, "Server": 632_241.20,
        "source": "mlcommons/inference_results_v4.1 closed/NVIDIA/results/"
                  "H200-SXM-141GBx8_TRT/resnet50/{Offline,Server}/performance/run_1",
    },
)


def per_accelerator(entry: dict[str, Any], scenario: str) -> float:
    return float(entry[scenario]) / int(entry["accelerators"])
