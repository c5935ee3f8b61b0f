"""Task layers: everything between a network's logits and the train loop.

A task owns its model family, its loss, its predictions and its data, so one
train loop serves every family (the t5x split). Each task class offers:

  build_model(train: bool, decode: bool = False) -> flax module
  init_variables(rng) -> variables            (pure; train.py jits/evals it)
  loss_sums(params, batch, rng, train) -> dict of sums: 'loss', 'weight'
      (its token count), 'correct'; extra sums are reported divided by
      'weight', except 'X_correct' with 'X_examples' (-> 'X_accuracy')
  predict(params, batch) -> per-example outputs (pure; e.g. beam search)
  train_batches(workdir, global_batch_size, host_rows) -> iterator with
      get_state()/set_state() (saved in checkpoints)
  eval_batches(global_batch_size, host_rows) -> list of host batches, each
      with 'example_weight' (0 for filler rows)
  score(outputs, batches) -> dict of host-side metrics (e.g. exact match,
      BLEU), for this host's examples; sums are merged over hosts by train.py
"""
import importlib

_TASKS = {
    'seq2seq': 'infra.tasks.seq2seq:Seq2SeqTask',
    'causal_lm': 'infra.tasks.causal_lm:CausalLMTask',
    'bert_pretraining': 'infra.tasks.bert_pretraining:BertPretrainingTask',
    'classification': 'infra.tasks.classification:ClassificationTask',
    'extractive_qa': 'infra.tasks.extractive_qa:ExtractiveQATask',
}


def register(name: str, target: str):
  _TASKS[name] = target


def get_task(config):
  """Builds the task named by `config.task`."""
  if config.task not in _TASKS:
    raise ValueError(f'config.task={config.task!r} is not one of '
                     f'{", ".join(sorted(_TASKS))}')
  module_name, class_name = _TASKS[config.task].split(':')
  return getattr(importlib.import_module(module_name), class_name)(config)
