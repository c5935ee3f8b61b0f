"""Experiment configs: the paper's parameter counts and flag overrides."""
import importlib
import json

import jax
import pytest

from models.config import model_config_from
from tasks import get_task


def param_count(config_module, **model_overrides):
  config = importlib.import_module(config_module).get_config()
  config.model.update(model_overrides)
  task = get_task(config)
  shapes = jax.eval_shape(task.init_variables, jax.random.key(0))
  return sum(x.size for x in jax.tree.leaves(shapes['params']))


@pytest.mark.parametrize('module, expected', [
    ('configs.transformer_base', 63_082_496),  # Table 3: "65M"
    ('configs.transformer_big', 214_245_376),  # Table 3: "213M"
    ('configs.t5_small', 60_506_624),  # T5-small: "60M" (Raffel et al.)
])
def test_paper_parameter_counts(module, expected):
  assert param_count(module) == expected


def test_llama_1b_has_tinyllamas_parameters_split_by_fsdp_in_bf16():
  """Counted from shapes alone (jax.eval_shape: nothing allocated): the
  1,100,048,384 of TinyLlama-1.1B (Hugging Face's count), in a mesh that
  gives every device to fsdp, computed in bfloat16."""
  # Tracing cuDNN attention needs a GPU; no attention has parameters.
  count = param_count('configs.llama_1b', attention_impl='blockwise')
  assert 0.9e9 < count < 1.3e9
  assert count == 1_100_048_384
  config = importlib.import_module('configs.llama_1b').get_config()
  assert config.parallelism == 'mesh' and config.mesh.fsdp == -1
  assert (config.model.dtype, config.model.param_dtype) == ('bfloat16',
                                                             'float32')


def test_unknown_model_field_is_rejected():
  config = importlib.import_module('configs.default').get_config()
  fields = dict(config.model)
  fields['num_layer'] = 3
  with pytest.raises(ValueError, match='model.num_layer'):
    model_config_from(fields)


def test_default_config_builds_its_model():
  config = importlib.import_module('configs.default').get_config()
  assert get_task(config).model_config.num_layers == config.model.num_layers


# Every experiment in configs/ with each of its named variants.
_EXPERIMENTS = [
    ('default', None), ('transformer_base', None), ('transformer_big', None),
    ('multi30k_en_de', None), ('multi30k_en_de', 'steps=100'),
    ('xsum_summarization', None), ('gpt2_small', None), ('gpt2_medium', None),
    ('causal_lm', None), ('causal_lm', 'data=shakespeare'),
    ('causal_lm', 'size=small_char,data=shakespeare'),
    ('bert_pretraining', None), ('bert_pretraining', 'data=wikitext2'),
    ('bert_pretraining', 'size=mini,data=sst2_text'),
    ('bert_finetune', 'size=mini,data=sst2,labels=1000'),
    ('bert_finetune', 'data=sst2,init=minilm,labels=all'),
    ('bert_finetune', None), ('bert_finetune', 'task=qa'),
    ('bert_finetune', 'data=sst2'), ('bert_finetune', 'data=sst2,init=minilm'),
    ('bert_finetune', 'task=qa,data=squad,init=minilm'),
    ('shakespeare_char', 'cpu'), ('shakespeare_char', 'gpu'),
    ('multi30k_de_en', None), ('llama_small', None), ('llama_1b', None),
    ('t5_small', None), ('t5_small', 'tiny'), ('t5_small', 'tiny,v1_1'),
]


def _flat_keys(config, prefix=''):
  keys = set()
  for name, value in config.items():
    if hasattr(value, 'items') and name not in ('split_fractions',):
      keys |= _flat_keys(value, f'{prefix}{name}.')
    else:
      keys.add(prefix + name)
  return keys


def test_every_config_module_is_listed():
  import pathlib  # pylint: disable=g-import-not-at-top
  names = {p.stem for p in pathlib.Path(__file__).parents[1].glob(
      'configs/*.py')} - {'__init__', 'base_config', 'bert_sizes'}
  assert names == {name for name, _ in _EXPERIMENTS}


@pytest.mark.parametrize('name, arg', _EXPERIMENTS)
def test_every_config_builds_and_sets_only_declared_fields(name, arg):
  from configs.base_config import base_config, validate  # pylint: disable=g-import-not-at-top
  module = importlib.import_module(f'configs.{name}')
  config = module.get_config(arg) if arg else module.get_config()
  assert _flat_keys(config) == _flat_keys(base_config())
  task = get_task(config)  # validates the model fields and the task name
  validate(config)  # every value train.py checks before it starts
  assert task.model_config.vocab_size == config.model.vocab_size
  with pytest.raises(AttributeError, match='cannot be added'):
    config.data.typo_field = 1  # locked: an unknown field fails where set


@pytest.mark.parametrize('arg, error', [
    ('data=sst2,labels=300', "labels='300' is not one of 1000, 5000, all"),
    ('data=synthetic,labels=1000', "labels='1000' needs data=sst2"),
])
def test_a_bad_label_budget_is_one_line(arg, error):
  from configs import bert_finetune  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=error):
    bert_finetune.get_config(arg)


@pytest.mark.parametrize('arg, rates', [
    ('size=mini,data=sst2,labels=1000', 4), ('init=minilm,data=sst2,labels=all', 3)])
def test_the_label_budget_sweep_tunes_on_the_heldout_slice(arg, rates):
  from configs import bert_finetune  # pylint: disable=g-import-not-at-top
  from sweeping import spec  # pylint: disable=g-import-not-at-top
  config = bert_finetune.get_config(arg)
  parsed = spec.parse_spec(bert_finetune.get_sweep(arg), config)
  assert parsed.fixed == {'data.eval_split': 'heldout'}
  assert len(parsed.grid['optimizer.learning_rate']) == parsed.budget == rates
  with pytest.raises(ValueError, match='tunes on the held-out slice'):
    bert_finetune.get_sweep('size=mini,data=sst2')


def test_a_run_saved_under_renamed_fields_loads_and_resumes(tmp_path):
  """A config.json written before data.task/min_len/max_len became
  data.synthetic_* (and model.cpu_bf16_dots model.cpu_fast_dots): its
  values are read under the new names, and the same config resumes it,
  while another value is still a difference."""
  from configs import base_config, default  # pylint: disable=g-import-not-at-top
  from errors import UserError  # pylint: disable=g-import-not-at-top
  from training import run_config  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.data.synthetic_task, config.data.synthetic_max_len = 'sort', 10
  run_config.save(config, str(tmp_path))
  saved = json.loads((tmp_path / 'config.json').read_text())
  for old, new in run_config.RENAMED.items():
    section, old_name = old.split('.')
    saved[section][old_name] = saved[section].pop(new.split('.')[1])
  config.model.cpu_fast_dots = False
  saved['model']['cpu_bf16_dots'] = False
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  loaded = run_config.load(str(tmp_path), base_config.base_config())
  assert (loaded.data.synthetic_task, loaded.data.synthetic_max_len,
          loaded.model.cpu_fast_dots) == ('sort', 10, False)
  run_config.check_resume(str(tmp_path), config, base_config.base_config())
  config.data.synthetic_max_len = 11
  with pytest.raises(UserError, match=r'data.synthetic_max_len \(10 -> 11\)'):
    run_config.check_resume(str(tmp_path), config, base_config.base_config())
