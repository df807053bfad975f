#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with the wheels the GPU image lacks, for its Python 3.12, so that
# benchmarks/gpu_check.sh installs seqplay there without a registry. Run here, where PyPI answers.
# The image already has torch, numpy, safetensors, tokenizers, click, rich, pytest, pytest-timeout and
# hypothesis; these are the rest of seqplay's dependencies (pure Python).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl \
    platformdirs plotext textual==8.2.8 textual-plotext mdit-py-plugins linkify-it-py uc-micro-py
ls -la .whl
