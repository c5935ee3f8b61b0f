"""Tasks: everything between a network's logits and the train loop.

The interface is `tasks.base.Task`; one module per task family. `get_task`
builds the one that `config.task` names.

Adding a task is one module and one line in `_TASKS`. Its Task subclass
defines `model_name`, `checkpoint_family` (init_from), `flops_family` (a
training/flops.FORMULA_FAMILIES formula), `predict_mode` (a key of
training/prediction.MODES, or None), `make_data`, `loss_sums`, `predict`
and `score`; and, where the defaults of tasks/base.py do not fit it,
`step_shape`, `row_lengths`, `export_token_ids` and the metric names.
tests/test_task_registry.py walks `_TASKS` and fails for a task that
leaves a question unanswered.
"""
import importlib

from errors import UserError
from tasks.base import Task

_TASKS = {
    'seq2seq': 'tasks.seq2seq:Seq2SeqTask',
    'causal_lm': 'tasks.causal_lm:CausalLMTask',
    'bert_pretraining': 'tasks.bert_pretraining:BertPretrainingTask',
    'classification': 'tasks.classification:ClassificationTask',
    'extractive_qa': 'tasks.extractive_qa:ExtractiveQATask',
}
NAMES = tuple(_TASKS)
# Reported by the evaluator for every task whose loss is a cross-entropy
# (Task.likelihood_loss; a regression reports only 'loss'); decoded metrics
# come on top.
LOSS_METRICS = ('loss', 'accuracy', 'perplexity')


def class_named(name: str) -> type[Task]:
  """The task class registered as `name` (a key of _TASKS)."""
  module_name, class_name = _TASKS[name].split(':')
  return getattr(importlib.import_module(module_name), class_name)


def task_class(config) -> type[Task]:
  if config.task not in _TASKS:
    raise UserError(f'config.task={config.task!r} is not one of '
                    f'{", ".join(sorted(_TASKS))}')
  return class_named(config.task)


def checkpoint_family(name: str | None) -> str | None:
  """The init_from family of the task registered as `name`; None for a
  name that is not registered (a run saved before tasks were named)."""
  return class_named(name).checkpoint_family if name in _TASKS else None


def get_task(config) -> Task:
  """Builds the task named by `config.task`."""
  return task_class(config)(config)


def eval_metric_names(config) -> list[str]:
  """The 'eval/...' metrics a run of `config` reports at each evaluation
  (decoded ones only when config.decode.beam_size > 0); loads no data."""
  cls = task_class(config)
  names = list(LOSS_METRICS if cls.likelihood_loss(config) else ('loss',))
  names += cls.loss_metric_names(config)
  if config.decode.beam_size > 0:
    names += [n for n in cls.decoded_metric_names(config) if n not in names]
  return [f'eval/{name}' for name in names]
