"""Experiment configs: the paper's parameter counts and flag overrides."""
import importlib

import jax
import jax.numpy as jnp
import pytest

from infra.tasks import get_task
from models.config import model_config_from


def param_count(config_module):
  config = importlib.import_module(config_module).get_config()
  task = get_task(config)
  shapes = jax.eval_shape(task.init_variables, jax.random.key(0))
  return sum(x.size for x in jax.tree.leaves(shapes['params']))


@pytest.mark.parametrize('module, expected', [
    ('configs.transformer_base', 63_082_496),  # Table 3: "65M"
    ('configs.transformer_big', 214_245_376),  # Table 3: "213M"
])
def test_paper_parameter_counts(module, expected):
  assert param_count(module) == expected


def test_unknown_model_field_is_rejected():
  config = importlib.import_module('configs.default').get_config()
  fields = dict(config.model)
  fields['num_layer'] = 3
  with pytest.raises(ValueError, match='model.num_layer'):
    model_config_from(fields)


def test_default_config_builds_its_model():
  config = importlib.import_module('configs.default').get_config()
  assert get_task(config).model_config.num_layers == config.model.num_layers
