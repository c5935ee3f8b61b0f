"""One metrics writer: TensorBoard event files and a JSON-lines file.

Only process 0 writes, so multi-host runs produce one record per step.
"""
import json
import os

import jax


class MetricsWriter:
  """write(step, {'train/loss': 1.2, ...}) -> events + metrics.jsonl."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    self._tb = None
    self._jsonl = None
    if self.enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))
      self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a',
                         encoding='utf-8')

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


def read_metrics(workdir: str):
  """All records of `workdir/metrics.jsonl`, in order."""
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    return [json.loads(line) for line in f if line.strip()]
