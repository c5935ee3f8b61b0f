"""Test set-up: 8 simulated CPU devices and the shared data directory.

XLA_FLAGS must be set before jax is imported anywhere.
"""
import atexit
import importlib
import os
import pathlib
import shutil
import tempfile

import pytest

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


def optional_module(name: str):
  """The module, or None where it is not installed.

  Files import torch and transformers with this and mark only the tests
  that use them (`requires`): a module-level pytest.importorskip would
  also skip every test of the file that needs neither.
  """
  try:
    return importlib.import_module(name)
  except ImportError:
    return None


def requires(**modules):
  """A skipif mark for the tests that need these optional modules
  (name=module or None), naming the ones missing."""
  missing = [name for name, module in modules.items() if module is None]
  return pytest.mark.skipif(bool(missing), reason=(
      f'needs {", ".join(missing)} (not installed)'))


def eval_loss_recomputed(config, workdir, params) -> float:
  """The eval loss of `params` on the run's eval split, summed batch by
  batch on one device: independent of training/evaluator.py (its parallelism,
  merging and division), which a test checks the run's figure against."""
  import jax  # pylint: disable=g-import-not-at-top
  from tasks import get_task  # pylint: disable=g-import-not-at-top
  task = get_task(config)
  task.data.run_tokenizer(workdir)  # the run's own saved tokenizer
  loss_sums = jax.jit(lambda p, b: task.loss_sums(p, b, None, train=False))
  loss = weight = 0.0
  for batch in task.eval_batches(config.eval_batch_size):
    sums = loss_sums(params, batch)
    loss += float(sums['loss'])
    weight += float(sums['weight'])
  assert weight > 0
  return loss / weight
