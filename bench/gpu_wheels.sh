#!/usr/bin/env bash
# Wheels that bench/gpu.py needs on the device machine (its image has torch and transformers, not diffusers):
# saved into .whl/ (git-ignored), carried by the device run (carry: [".whl"]). Python 3.12, x86-64.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl diffusers==0.42.1 importlib_metadata ftfy wcwidth
ls -la .whl
