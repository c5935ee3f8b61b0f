"""Test set-up: 8 simulated CPU devices and the shared data directory.

XLA_FLAGS must be set before jax is imported anywhere.
"""
import os
import pathlib

# Generous collective timeouts: on a loaded 2-core machine, 8 simulated
# devices can take long to meet at an all-reduce, and XLA would abort.
COLLECTIVE_TIMEOUTS = ('--xla_cpu_collective_timeout_seconds=1800 '
                       '--xla_cpu_collective_call_terminate_timeout_seconds=1800')
os.environ.setdefault(
    'XLA_FLAGS',
    f'--xla_force_host_platform_device_count=8 {COLLECTIVE_TIMEOUTS}')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
REPO = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault('DATA_DIR', str(REPO.parent / 'shared' / 'data'))
os.environ.setdefault('HF_HUB_OFFLINE', '1')
