"""Test set-up: 8 simulated CPU devices and the shared data directory.

XLA_FLAGS must be set before jax is imported anywhere.
"""
import os
import pathlib

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
REPO = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault('DATA_DIR', str(REPO.parent / 'shared' / 'data'))
os.environ.setdefault('HF_HUB_OFFLINE', '1')
