"""One metrics writer: TensorBoard event files and a JSON-lines file.

Only process 0 writes, so multi-host runs produce one record per step.
A run that resumes from step s first drops what an earlier leg logged after
s (steps it will redo), in both files, so each step is recorded once.
"""
import json
import os
import sys

import jax


def summary_writer_class():
  """tensorboardX's SummaryWriter, imported without PyTorch.

  tensorboardX imports torch whenever it is installed, only to accept torch
  tensors as values; where the test extras put torch beside jax, that added
  1.35 s to the start of every run (2 cores, AMD EPYC; `python -X
  importtime`). Where torch is already imported, nothing changes.
  """
  if 'tensorboardX.writer' in sys.modules or 'torch' in sys.modules:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    return SummaryWriter
  sys.modules['torch'] = None  # `import torch` raises ImportError
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  finally:
    del sys.modules['torch']
  return SummaryWriter


class MetricsWriter:
  """write(step, {'train/loss': 1.2, ...}) -> events + metrics.jsonl."""

  def __init__(self, workdir: str, start_step: int | None = None):
    """start_step: the step this leg resumes from (0: a fresh run); records
    after it are dropped. None keeps everything (appends)."""
    self.enabled = jax.process_index() == 0
    self._tb = None
    self._jsonl = None
    if self.enabled:
      SummaryWriter = summary_writer_class()  # pylint: disable=invalid-name
      path = os.path.join(workdir, 'metrics.jsonl')
      purge_step = None
      if start_step is not None:
        _drop_after(path, start_step)
        purge_step = start_step + 1  # events at steps >= this are hidden
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'),
                               purge_step=purge_step)
      self._jsonl = open(path, 'a', encoding='utf-8')

  def write(self, step: int, metrics: dict):
    if not self.enabled:
      return
    metrics = {k: float(v) for k, v in metrics.items()}
    for name, value in metrics.items():
      self._tb.add_scalar(name, value, step)
    self._jsonl.write(json.dumps({'step': int(step), **metrics}) + '\n')
    self._jsonl.flush()

  def close(self):
    if self.enabled:
      self._tb.close()
      self._jsonl.close()


def _drop_after(path: str, step: int):
  """Rewrites `path` without records after `step` (write, then rename)."""
  if not os.path.exists(path):
    return
  with open(path, encoding='utf-8') as f:
    lines = [line for line in f if line.strip()]
  kept = [line for line in lines if _step_of(line) <= step]
  if len(kept) == len(lines):
    return
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    f.writelines(kept)
  os.replace(path + '.tmp', path)


def _step_of(line: str) -> float:
  """The record's step; a torn last line (a killed writer) counts as never
  written."""
  try:
    return json.loads(line)['step']
  except (ValueError, KeyError, TypeError):
    return float('inf')


def read_metrics(workdir: str):
  """All records of `workdir/metrics.jsonl`, in order."""
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    return [json.loads(line) for line in f if line.strip()]
