#!/usr/bin/env bash
# Fetches, on this (networked) machine, the wheels bench/device_check.sh installs on the GPU
# machine, which has no network: mlcommons-loadgen for its Python 3.12. They land in .whl/
# (git-ignored), which the device tool's `carry` then takes along:
#   bash bench/device_wheels.sh
#   run(command="bash bench/device_check.sh", carry=[".whl"])
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "mlcommons-loadgen==6.0.17"
ls -la .whl
