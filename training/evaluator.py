"""Evaluation: the eval metrics of a state, during training (the loop's
`Evaluator`) or of a trained workdir's parameters (`evaluate_run`, for
evaluate.py, which writes <workdir>/evaluations/<name>.json).

Loss and token accuracy come from the eval step over the whole eval set;
with config.decode.beam_size > 0, the task's decoded-sequence metrics
(BLEU, ROUGE, exact match, ...) come on top, merged over hosts.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from errors import UserError
from training import metrics, parallel
from training.steps import CompiledSteps, TrainState, compile_steps
from training.trained_run import TrainedRun


def mean_metrics(sums: dict, prefix: str) -> dict:
  """Sums from the steps -> means, named for the writers.

  Every sum is divided by 'weight' (the loss's token count), except
  'X_correct' with an 'X_examples' count, which becomes 'X_accuracy';
  'correct' becomes 'accuracy' (a regression's loss has none).
  """
  weight = max(float(sums['weight']), 1.0)
  out = {f'{prefix}/accuracy': float(sums['correct']) / weight
         } if 'correct' in sums else {}
  for name, value in sums.items():
    if name in ('weight', 'correct') or name.endswith('_examples'):
      continue
    head = name[:-len('_correct')]
    if name.endswith('_correct') and f'{head}_examples' in sums:
      count = max(float(sums[f'{head}_examples']), 1.0)
      out[f'{prefix}/{head}_accuracy'] = float(value) / count
    else:
      out[f'{prefix}/{name}'] = float(value) / weight
  return out


class Evaluator:
  """The eval metrics of a placed state on the task's eval batches (read
  once, at construction)."""

  def __init__(self, config, task, dp: parallel.Parallel,
               steps: CompiledSteps):
    self.config, self.task, self.dp, self.steps = config, task, dp, steps
    self.batches = task.eval_batches(config.eval_batch_size)

  def evaluate(self, state) -> dict:
    """{'eval/<metric>': value} of `state`, merged over hosts."""
    totals = None
    for batch in self.batches:
      sums = self.dp.reduced(self.steps.eval(state, self.dp.shard(batch)))
      totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
    results = mean_metrics(totals, 'eval')
    if type(self.task).likelihood_loss(self.config):
      results['eval/perplexity'] = metrics.perplexity(totals['loss'],
                                                      totals['weight'])
    if self.config.decode.beam_size > 0:
      outputs = [self.dp.to_host(self.steps.predict(state, self.dp.shard(b)))
                 for b in self.batches]
      sums = parallel.sum_over_hosts(self.task.score(outputs, self.batches))
      results.update({f'eval/{name}': value for name, value in
                      self.task.metrics_from_sums(sums).items()})
    return results

  def evaluate_averaged(self, state, checkpointer, log) -> dict:
    """The metrics of the mean parameters of the last
    config.average_last_checkpoints checkpoints, as 'averaged/<metric>'."""
    steps = sorted(checkpointer.all_steps())[
        -self.config.average_last_checkpoints:]
    host_state = self.dp.global_state(state)
    params = checkpointer.average_params(steps,
                                         self.dp.abstract_state(host_state))
    averaged = self.dp.place_state(host_state.replace(params=params))
    results = self.evaluate(averaged)
    log(f'eval of the mean of checkpoints {steps}: ' + ', '.join(
        f'{k[5:]} {v:.4f}' for k, v in sorted(results.items())))
    return {k.replace('eval/', 'averaged/'): v for k, v in results.items()}


def score(config, task, params, step: int) -> dict:
  """The eval metrics of `params` (host arrays) with the run's
  parallelism, as training computes them."""
  dp = parallel.for_config(config, task)
  dp.check_batch_size(config.eval_batch_size, 'eval_batch_size')
  state = dp.place_state(TrainState(
      step=jnp.asarray(step, jnp.int32), params=params, opt_state=()))
  return Evaluator(config, task, dp, compile_steps(dp, task)).evaluate(state)


def evaluate_run(run: TrainedRun, eval_file: str | None = None) -> dict:
  """Scores the run's parameters and writes the record; returns metrics.
  With `eval_file`, the run's config must already read it (evaluate.py's
  `with_eval_file`)."""
  run.tokenizer  # the run's own, before the eval pipeline asks for one
  results = score(run.config, run.task, run.params, run.steps[-1])
  write_record(run.workdir, record_name(run.steps, eval_file),
               dict(steps=run.steps, eval_file=eval_file, metrics=results))
  return results


def record_name(steps, eval_file) -> str:
  name = (f'step_{steps[0]}' if len(steps) == 1 else
          f'mean_of_{len(steps)}_to_step_{steps[-1]}')
  if eval_file:
    name += '_on_' + os.path.basename(eval_file.split(',')[0])
  return name


def record_path(workdir: str, name: str) -> str:
  return os.path.join(workdir, 'evaluations', name + '.json')


def write_record(workdir: str, name: str, record: dict):
  path = record_path(workdir, name)
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
      json.dump(record, f, indent=2, sort_keys=True)
      f.write('\n')
    os.replace(path + '.tmp', path)
  except OSError as e:  # the workdir's disk or permissions
    raise UserError(f'{path} cannot be written: {e.strerror or e}') from e
