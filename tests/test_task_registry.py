"""Every registered task answers every question that other modules ask of
a task (tasks/__init__.py's docstring lists them): adding a task without
an answer fails here, not in a run."""
import pytest

from configs import base_config
from errors import UserError
from input_data import synthetic
import tasks
from training import flops, prediction

NAMES = sorted(tasks._TASKS)  # pylint: disable=protected-access


def _config(name: str, source: str = 'synthetic'):
  """base_config's defaults for task `name` on built-in data or files."""
  config = base_config.base_config()
  config.task = name
  config.data.source = source
  return config


@pytest.mark.parametrize('name', NAMES)
def test_class_answers_without_being_built(name):
  cls = tasks.class_named(name)
  assert isinstance(cls.model_name, str)
  assert isinstance(cls.checkpoint_family, str) and cls.checkpoint_family
  assert cls.flops_family in flops.FORMULA_FAMILIES
  assert cls.predict_mode is None or cls.predict_mode in prediction.MODES
  for source in ('synthetic', 'files'):
    shape = cls.step_shape(_config(name, source))
    assert isinstance(shape, flops.StepShape) and shape.tokens > 0


@pytest.mark.parametrize('name', NAMES)
def test_built_task_answers_its_data_source_and_export(name):
  task = tasks.get_task(_config(name))
  assert task.builtin_data is True
  counted = flops.forward_flops(task.model_config, task.flops_family,
                                task.step_shape(task.config))
  assert counted > 0
  ids = task.export_token_ids(synthetic.IdTokenizer(
      task.model_config.vocab_size))
  assert ids and all(isinstance(v, int) for v in ids.values())
  try:  # an architecture, or a one-line refusal naming why
    assert task.export_architecture()
  except UserError as e:
    assert '\n' not in str(e)


@pytest.mark.parametrize('question', ['checkpoint_family', 'flops_family',
                                      'predict_mode'])
def test_a_task_without_an_answer_is_caught(monkeypatch, question):
  cls = tasks.class_named('seq2seq')  # declares each itself: Task has none
  monkeypatch.delattr(cls, question)
  with pytest.raises(AttributeError):
    test_class_answers_without_being_built('seq2seq')


def test_the_family_rule_is_the_tasks():
  bert = tasks.get_task(_config('classification'))
  bert.check_same_family('/w', 'extractive_qa')  # one family: no error
  with pytest.raises(UserError, match="task 'seq2seq' .encoder-decoder."):
    bert.check_same_family('/w', 'seq2seq')
  assert tasks.checkpoint_family('no_such_task') is None
