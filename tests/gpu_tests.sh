#!/usr/bin/env bash
# The suite's GPU-only tests, run on a GPU: tests/conftest.py puts the tests
# on the CPU platform unless JAX_PLATFORMS is set, so under `make test` they
# skip even on a GPU machine. Run from anywhere:
#   bash tests/gpu_tests.sh        # on a machine with a CUDA GPU and jax[cuda]
# experiments/gpu_suite.py runs it as its row `gpu_tests`.
# GPU_TESTS_PLATFORM=cpu runs the same selection on the CPU (they skip),
# to check the command itself; PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
export JAX_PLATFORMS="${GPU_TESTS_PLATFORM:-cuda}"
exec "${PYTHON:-python3}" -m pytest -p no:cacheprovider -rs \
    tests/test_blockwise_attention.py -k on_a_gpu
