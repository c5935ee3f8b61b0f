"""Test set-up: 8 simulated CPU devices and the shared data directory.

XLA_FLAGS must be set before jax is imported anywhere.
"""
import atexit
import os
import pathlib
import shutil
import tempfile

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

# One persistent XLA compilation cache for the whole session, inherited by
# the train.py/sweep subprocesses: the suite compiles the same tiny models
# many times (a run, its resumed leg, a sweep's trials), and a cache hit
# costs a fraction of a compile. A fresh directory per session, so nothing
# carries over from another checkout or jax version.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix='jax-compilation-cache-')
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '-1')
