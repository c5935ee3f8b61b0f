"""Tasks: everything between a network's logits and the train loop.

The interface is `tasks.base.Task`; one module per task family. `get_task`
builds the one that `config.task` names.
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
# Reported by the evaluator for every task; decoded metrics come on top.
LOSS_METRICS = ('loss', 'accuracy', 'perplexity')


def task_class(config) -> type[Task]:
  if config.task not in _TASKS:
    raise UserError(f'config.task={config.task!r} is not one of '
                    f'{", ".join(sorted(_TASKS))}')
  module_name, class_name = _TASKS[config.task].split(':')
  return getattr(importlib.import_module(module_name), class_name)


def get_task(config) -> Task:
  """Builds the task named by `config.task`."""
  return task_class(config)(config)


def eval_metric_names(config) -> list[str]:
  """The 'eval/...' metrics a run of `config` reports at each evaluation
  (decoded ones only when config.decode.beam_size > 0); loads no data."""
  cls = task_class(config)
  names = list(LOSS_METRICS) + list(cls.loss_metric_names(config))
  if config.decode.beam_size > 0:
    names += [n for n in cls.decoded_metric_names(config) if n not in names]
  return [f'eval/{name}' for name in names]
