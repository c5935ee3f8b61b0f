"""Networks by name: each task names its network (`Task.model_name`, e.g.
'decoder_lm' for config.task='causal_lm'; tasks/), `config.model` gives
its ModelConfig, so adding a network touches no training code.

    cfg = model_config_from(config.model)
    model = registry.build(task.model_name, cfg, deterministic=False)
    params = model.init(rng, *registry.dummy_inputs(task.model_name, cfg))

Every BERT task model keeps the encoder under 'bert', so weights move
between them by path (`training.pretrained.merge_pretrained`).
"""
import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn

from models import bert
from models.config import ModelConfig
from models.decoder_lm import DecoderLM
from models.encoder_decoder import EncoderDecoder


def _ids(batch, length):
  return jnp.zeros((batch, length), jnp.int32)


def _seq2seq_inputs(batch, length):
  return (_ids(batch, length), _ids(batch, length))


def _bert_inputs(batch, length):
  return (_ids(batch, length), _ids(batch, length),
          jnp.ones((batch, length), jnp.int32))


@dataclasses.dataclass(frozen=True)
class ModelFamily:
  """A network class and the positional inputs that initialise it."""
  module_class: type
  dummy_inputs: Callable[[int, int], tuple]  # (batch, length) -> init args
  decodes: bool = False                      # takes `decode=` (KV cache)


MODELS = {
    'encoder_decoder': ModelFamily(EncoderDecoder, _seq2seq_inputs, True),
    'decoder_lm': ModelFamily(DecoderLM, lambda b, l: (_ids(b, l),), True),
    # The encoder alone, as HF BertModel: dict(hidden, pooled).
    'bert': ModelFamily(bert.Bert, _bert_inputs),
    'bert_pretraining': ModelFamily(bert.BertForPreTraining, _bert_inputs),
    'bert_mlm': ModelFamily(bert.BertForMaskedLM, _bert_inputs),
    'bert_classifier': ModelFamily(bert.BertForSequenceClassification,
                                   _bert_inputs),
    'bert_token_classifier': ModelFamily(bert.BertForTokenClassification,
                                         _bert_inputs),
    'bert_qa': ModelFamily(bert.BertForQuestionAnswering, _bert_inputs),
}


def family(model_name: str) -> ModelFamily:
  if model_name not in MODELS:
    raise ValueError(f'model {model_name!r} is not one of '
                     f'{", ".join(MODELS)}')
  return MODELS[model_name]


def build(model_name: str, model_cfg: ModelConfig, *,
          deterministic: bool = True, decode: bool = False) -> nn.Module:
  """The flax module for `model_name`, unbound."""
  fam = family(model_name)
  if decode and not fam.decodes:
    raise ValueError(f'model {model_name!r} has no decoding mode')
  kwargs = dict(decode=decode) if fam.decodes else {}
  return fam.module_class(model_cfg, deterministic=deterministic, **kwargs)


def dummy_inputs(model_name: str, model_cfg: ModelConfig, batch_size: int = 1,
                 length: int | None = None) -> tuple:
  """Positional arguments for `model.init` (zeros; length default 8)."""
  return family(model_name).dummy_inputs(
      batch_size, min(length or 8, model_cfg.max_len))


def init_variables(model_name: str, model_cfg: ModelConfig, rng) -> dict:
  """Freshly initialised variables, plain arrays (models/logical_axes.py:
  `model.init` gives them boxed with their logical axis names)."""
  model = build(model_name, model_cfg)
  return nn.meta.unbox(model.init(rng, *dummy_inputs(model_name, model_cfg)))


def init_params(model_name: str, model_cfg: ModelConfig, rng):
  """Freshly initialised parameters (the 'params' collection)."""
  return init_variables(model_name, model_cfg, rng)['params']


def param_axes(model_name: str, model_cfg: ModelConfig):
  """The parameters' logical axis names, a pytree of PartitionSpecs such as
  P('embed', 'mlp') (models/logical_axes.py); nothing is allocated."""
  model = build(model_name, model_cfg)
  boxed = jax.eval_shape(lambda: model.init(
      jax.random.key(0), *dummy_inputs(model_name, model_cfg)))
  return nn.get_partition_spec(boxed)['params']


def param_shapes(model_name: str, model_cfg: ModelConfig):
  """Parameter ShapeDtypeStructs from `jax.eval_shape`: nothing allocated."""
  return jax.eval_shape(
      lambda: init_params(model_name, model_cfg, jax.random.key(0)))


def count_params(tree) -> int:
  """Number of scalars in a pytree of arrays or ShapeDtypeStructs."""
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
