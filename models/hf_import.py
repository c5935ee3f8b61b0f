"""Import of Hugging Face checkpoints (BERT, GPT-2, Llama, T5) from a directory.

A checkpoint directory holds `config.json` and `model.safetensors` (or
`pytorch_model.bin`, or sharded `*.index.json` versions), with the tokenizer
files beside them. Supported architectures (with or without the `bert.` /
`transformer.` prefix) and the registry model each becomes:

    BertModel                      -> 'bert'  (encoder + pooler)
    BertForPreTraining             -> 'bert_pretraining'
    BertForMaskedLM                -> 'bert_mlm'
    BertForSequenceClassification  -> 'bert_classifier'
    BertForTokenClassification     -> 'bert_token_classifier'
    BertForQuestionAnswering       -> 'bert_qa'
    GPT2Model, GPT2LMHeadModel     -> 'decoder_lm'
    LlamaForCausalLM               -> 'decoder_lm' (RMSNorm, SwiGLU,
                                      grouped-query attention, rotary)
    T5ForConditionalGeneration     -> 'encoder_decoder' (models/hf_import_t5.py)

Use:

    model_cfg, params, model_name = load_hf_checkpoint('/ckpt/bert-base')
    model = registry.build(model_name, model_cfg)

Fine-tuning (`config.init_from = '/ckpt/bert-base'`): train.py initialises
the task model as usual, then calls

    params = pretrained.restore_hf_checkpoint(params, config.init_from)

which copies every parameter whose path exists in both (the encoder under
'bert', or the whole decoder LM), leaves the others (new heads) as
initialised, and fails on a shape mismatch naming the path and both shapes.

Import is strict: a tensor that maps nowhere, or a parameter that no tensor
fills, raises `CheckpointMismatchError` listing both sets.
"""
import json
import logging
import os
import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from models import registry
from models.config import ModelConfig

ARCHITECTURES = {
    'BertModel': 'bert',
    'BertForPreTraining': 'bert_pretraining',
    'BertForMaskedLM': 'bert_mlm',
    'BertForSequenceClassification': 'bert_classifier',
    'BertForTokenClassification': 'bert_token_classifier',
    'BertForQuestionAnswering': 'bert_qa',
    'GPT2Model': 'decoder_lm',
    'GPT2LMHeadModel': 'decoder_lm',
    'LlamaForCausalLM': 'decoder_lm',
}
# The model an unknown architecture of a known model_type is tried as.
_BASE_MODEL = {'bert': 'bert', 'gpt2': 'decoder_lm', 'llama': 'decoder_lm'}
_LIST_LIMIT = 8


class CheckpointMismatchError(ValueError):
  """The checkpoint's tensors do not fit the model's parameters."""


class HFCheckpoint(NamedTuple):
  config: ModelConfig
  params: Any        # nested dict of jnp arrays, as `model.init` makes
  model_name: str    # a models/registry.py name


def list_names(names) -> str:
  names = sorted(names)
  shown = ', '.join(names[:_LIST_LIMIT])
  more = len(names) - _LIST_LIMIT
  return f'({len(names)}) {shown}' + (f', ... and {more} more' if more > 0
                                      else '')


# ---------------------------------------------------------------- reading


def read_hf_config(path: str) -> dict:
  config_file = os.path.join(path, 'config.json')
  if not os.path.exists(config_file):
    raise FileNotFoundError(f'{path} has no config.json: not a Hugging Face '
                            'checkpoint directory')
  with open(config_file) as f:
    return json.load(f)


def _read_safetensors(filename: str) -> dict:
  from safetensors import safe_open
  tensors = {}
  with safe_open(filename, framework='numpy') as f:
    keys = list(f.keys())
    for key in keys:
      try:
        tensors[key] = f.get_tensor(key)
      except TypeError:  # bfloat16: numpy has no such dtype
        break
  if len(tensors) < len(keys):
    with jax.default_device(jax.devices('cpu')[0]), \
        safe_open(filename, framework='flax') as f:
      for key in keys:
        if key not in tensors:
          tensors[key] = np.asarray(f.get_tensor(key).astype(jnp.float32))
  return tensors


def _read_torch(filename: str) -> dict:
  import torch  # only for pytorch_model.bin checkpoints
  state = torch.load(filename, map_location='cpu', weights_only=True)
  return {k: v.float().numpy() if v.is_floating_point() else v.numpy()
          for k, v in state.items()}


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """All tensors of the checkpoint in `path`, by their Hugging Face names."""
  for name, reader in (('model.safetensors', _read_safetensors),
                       ('pytorch_model.bin', _read_torch)):
    if os.path.exists(os.path.join(path, name)):
      return reader(os.path.join(path, name))
    index = os.path.join(path, name + '.index.json')
    if os.path.exists(index):
      with open(index) as f:
        shards = sorted(set(json.load(f)['weight_map'].values()))
      tensors = {}
      for shard in shards:
        tensors.update(reader(os.path.join(path, shard)))
      return tensors
  raise FileNotFoundError(f'{path} has neither model.safetensors nor '
                          'pytorch_model.bin (nor a sharded index)')


# ---------------------------------------------------------------- config

_ACTIVATIONS = {'gelu': 'gelu', 'gelu_new': 'gelu_tanh',
                'gelu_pytorch_tanh': 'gelu_tanh', 'gelu_fast': 'gelu_tanh',
                'relu': 'relu', 'silu': 'silu', 'swish': 'silu'}


def _activation(name: str) -> str:
  if name not in _ACTIVATIONS:
    raise ValueError(f'activation {name!r} is not supported '
                     f'({", ".join(_ACTIVATIONS)})')
  return _ACTIVATIONS[name]


def model_config_from_hf(hf: dict, **overrides) -> tuple[ModelConfig, str]:
  """config.json dict -> (ModelConfig, registry model name).

  overrides: ModelConfig fields to set on top (dtype, scan_layers, remat,
  dropout ...); they may not change shapes.
  """
  model_type = hf.get('model_type')
  architecture = (hf.get('architectures') or [None])[0]
  if model_type == 'bert':
    if hf.get('position_embedding_type', 'absolute') != 'absolute':
      raise ValueError('BERT position_embedding_type='
                       f'{hf["position_embedding_type"]!r} is not supported '
                       '(absolute only)')
    labels = hf.get('id2label')
    fields = dict(
        vocab_size=hf['vocab_size'], d_model=hf['hidden_size'],
        num_heads=hf['num_attention_heads'], d_ff=hf['intermediate_size'],
        num_layers=hf['num_hidden_layers'],
        dropout_rate=hf.get('hidden_dropout_prob', 0.1),
        attention_dropout_rate=hf.get('attention_probs_dropout_prob', 0.1),
        activation=_activation(hf.get('hidden_act', 'gelu')),
        norm_position='post', final_layer_norm=False,
        embedding_layer_norm=True,
        layer_norm_epsilon=hf.get('layer_norm_eps', 1e-12),
        position_embedding='learned',
        max_len=hf.get('max_position_embeddings', 512),
        type_vocab_size=hf.get('type_vocab_size', 2),
        num_labels=len(labels) if labels else hf.get('num_labels', 2),
        tie_output_embedding=True, scale_embedding=False,
        init_std=hf.get('initializer_range', 0.02))
  elif model_type == 'gpt2':
    for flag in ('scale_attn_by_inverse_layer_idx', 'reorder_and_upcast_attn'):
      if hf.get(flag):
        raise ValueError(f'GPT-2 {flag}=True is not supported')
    if not hf.get('scale_attn_weights', True):
      raise ValueError('GPT-2 scale_attn_weights=False is not supported')
    d_model = hf['n_embd']
    fields = dict(
        vocab_size=hf['vocab_size'], d_model=d_model,
        num_heads=hf['n_head'], d_ff=hf.get('n_inner') or 4 * d_model,
        num_layers=hf['n_layer'],
        dropout_rate=hf.get('resid_pdrop', 0.1),
        attention_dropout_rate=hf.get('attn_pdrop', 0.1),
        activation=_activation(hf.get('activation_function', 'gelu_new')),
        norm_position='pre', final_layer_norm=True,
        layer_norm_epsilon=hf.get('layer_norm_epsilon', 1e-5),
        position_embedding='learned', max_len=hf['n_positions'],
        type_vocab_size=0,
        tie_output_embedding=hf.get('tie_word_embeddings', True),
        scale_embedding=False, init_std=hf.get('initializer_range', 0.02))
  elif model_type == 'llama':
    fields = _llama_fields(hf)
  else:
    raise ValueError(f'model_type {model_type!r} is not supported '
                     f'({", ".join(_BASE_MODEL)})')
  fields.update(overrides)
  model_name = ARCHITECTURES.get(architecture, _BASE_MODEL[model_type])
  if ARCHITECTURES.get(architecture) is None:
    logging.warning('architecture %s is not supported; trying it as %r',
                    architecture, model_name)
  return ModelConfig(**fields), model_name


def _llama_rope_base(hf: dict) -> float:
  """rope_theta from transformers 5 (`rope_parameters`) or 4 (top level,
  `rope_scaling`); only unscaled rotary positions are supported."""
  rope = hf.get('rope_parameters') or hf.get('rope_scaling') or {}
  kind = rope.get('rope_type', rope.get('type', 'default'))
  if kind != 'default':
    raise ValueError(f'Llama rope_type={kind!r} is not supported (default '
                     'only)')
  return float(rope.get('rope_theta', hf.get('rope_theta', 10000.0)))


def _llama_fields(hf: dict) -> dict:
  """ModelConfig fields of a Llama config.json.

  HF Llama rotates the two halves of each head (rotate_half), the layout
  of our `attention.rotary_embedding`, so q/k weights import unpermuted.
  """
  for flag in ('attention_bias', 'mlp_bias'):
    if hf.get(flag):
      raise ValueError(f'Llama {flag}=True is not supported')
  d_model, num_heads = hf['hidden_size'], hf['num_attention_heads']
  head_dim = hf.get('head_dim') or d_model // num_heads
  if head_dim * num_heads != d_model:
    raise ValueError(f'Llama head_dim={head_dim} is not hidden_size/'
                     f'num_attention_heads={d_model}/{num_heads}')
  return dict(
      vocab_size=hf['vocab_size'], d_model=d_model, num_heads=num_heads,
      num_kv_heads=hf.get('num_key_value_heads') or num_heads,
      d_ff=hf['intermediate_size'], num_layers=hf['num_hidden_layers'],
      dropout_rate=0.0, attention_dropout_rate=hf.get('attention_dropout', 0.0),
      activation=_activation(hf.get('hidden_act', 'silu')),
      ffn_kind='gated', norm_kind='rms', norm_position='pre',
      final_layer_norm=True, layer_norm_epsilon=hf.get('rms_norm_eps', 1e-6),
      position_embedding='rope', rope_base=_llama_rope_base(hf),
      max_len=hf.get('max_position_embeddings', 2048), type_vocab_size=0,
      tie_output_embedding=hf.get('tie_word_embeddings', False),
      scale_embedding=False, use_bias=False,
      init_std=hf.get('initializer_range', 0.02))


# ---------------------------------------------------------------- tensors
# Each rule maps Hugging Face tensor names (a regex over the name without the
# `bert.` / `transformer.` prefix) to one of our parameter paths, formatted
# with the regex groups ({b} is the encoder prefix, 'bert/' in task models),
# and a transform. torch Linear weights are [out, in] and flax kernels
# [in, out]; GPT-2's Conv1D weights are already [in, out]. A None path marks
# a tensor with nothing to import (buffers, tied copies).

_NORM_PARAM = {'weight': 'scale', 'gamma': 'scale', 'bias': 'bias',
               'beta': 'bias'}
_LN = r'(?P<norm>weight|bias|gamma|beta)'
_BERT_LAYER = r'encoder\.layer\.(?P<i>\d+)\.'
_BERT_LAYER_OUT = '{b}stack/layers_{i}'
_BERT_RULES = (
    (r'embeddings\.word_embeddings\.weight', '{b}token_embedding/embedding',
     'same'),
    (r'embeddings\.position_embeddings\.weight',
     '{b}embed/positions/embedding', 'same'),
    (r'embeddings\.token_type_embeddings\.weight',
     '{b}embed/token_types/embedding', 'same'),
    (r'embeddings\.position_ids', None, None),
    (rf'embeddings\.LayerNorm\.{_LN}', '{b}embed/norm/{norm}', 'same'),
    (rf'{_BERT_LAYER}attention\.self\.(?P<proj>query|key|value)\.weight',
     _BERT_LAYER_OUT + '/attention/{proj}/kernel', 'linear_to_heads'),
    (rf'{_BERT_LAYER}attention\.self\.(?P<proj>query|key|value)\.bias',
     _BERT_LAYER_OUT + '/attention/{proj}/bias', 'to_heads'),
    (rf'{_BERT_LAYER}attention\.output\.dense\.weight',
     _BERT_LAYER_OUT + '/attention/out/kernel', 'linear_from_heads'),
    (rf'{_BERT_LAYER}attention\.output\.dense\.bias',
     _BERT_LAYER_OUT + '/attention/out/bias', 'same'),
    (rf'{_BERT_LAYER}attention\.output\.LayerNorm\.{_LN}',
     _BERT_LAYER_OUT + '/attention_residual/norm/{norm}', 'same'),
    (rf'{_BERT_LAYER}intermediate\.dense\.weight',
     _BERT_LAYER_OUT + '/ffn/wi/kernel', 'linear'),
    (rf'{_BERT_LAYER}intermediate\.dense\.bias',
     _BERT_LAYER_OUT + '/ffn/wi/bias', 'same'),
    (rf'{_BERT_LAYER}output\.dense\.weight', _BERT_LAYER_OUT + '/ffn/wo/kernel',
     'linear'),
    (rf'{_BERT_LAYER}output\.dense\.bias', _BERT_LAYER_OUT + '/ffn/wo/bias',
     'same'),
    (rf'{_BERT_LAYER}output\.LayerNorm\.{_LN}',
     _BERT_LAYER_OUT + '/ffn_residual/norm/{norm}', 'same'),
    (r'pooler\.dense\.weight', '{b}pooler/kernel', 'linear'),
    (r'pooler\.dense\.bias', '{b}pooler/bias', 'same'),
    # Task heads (never under the `bert.` prefix).
    (r'cls\.predictions\.transform\.dense\.weight', 'mlm_head/transform/kernel',
     'linear'),
    (r'cls\.predictions\.transform\.dense\.bias', 'mlm_head/transform/bias',
     'same'),
    (rf'cls\.predictions\.transform\.LayerNorm\.{_LN}', 'mlm_head/norm/{norm}',
     'same'),
    (r'cls\.predictions\.bias', 'mlm_head/bias', 'same'),
    # Tied to the word embeddings, and a copy of cls.predictions.bias.
    (r'cls\.predictions\.decoder\.(weight|bias)', None, None),
    (r'cls\.seq_relationship\.weight', 'nsp_head/kernel', 'linear'),
    (r'cls\.seq_relationship\.bias', 'nsp_head/bias', 'same'),
    (r'classifier\.weight', 'classifier/kernel', 'linear'),
    (r'classifier\.bias', 'classifier/bias', 'same'),
    (r'qa_outputs\.weight', 'qa_outputs/kernel', 'linear'),
    (r'qa_outputs\.bias', 'qa_outputs/bias', 'same'),
)
_GPT2_LAYER = r'h\.(?P<i>\d+)\.'
_GPT2_LAYER_OUT = 'stack/layers_{i}'
_GPT2_RULES = (
    (r'wte\.weight', 'token_embedding/embedding', 'same'),
    (r'wpe\.weight', 'embed/positions/embedding', 'same'),
    (rf'{_GPT2_LAYER}ln_1\.{_LN}', _GPT2_LAYER_OUT + '/attention_residual/norm/{norm}',
     'same'),
    (rf'{_GPT2_LAYER}attn\.c_attn\.weight', _GPT2_LAYER_OUT + '/attention/{proj}/kernel',
     'split_qkv_to_heads'),
    (rf'{_GPT2_LAYER}attn\.c_attn\.bias', _GPT2_LAYER_OUT + '/attention/{proj}/bias',
     'split_qkv_to_heads'),
    (rf'{_GPT2_LAYER}attn\.c_proj\.weight', _GPT2_LAYER_OUT + '/attention/out/kernel',
     'from_heads'),
    (rf'{_GPT2_LAYER}attn\.c_proj\.bias', _GPT2_LAYER_OUT + '/attention/out/bias',
     'same'),
    (rf'{_GPT2_LAYER}attn\.(bias|masked_bias)', None, None),  # causal-mask buffers
    (rf'{_GPT2_LAYER}ln_2\.{_LN}', _GPT2_LAYER_OUT + '/ffn_residual/norm/{norm}',
     'same'),
    (rf'{_GPT2_LAYER}mlp\.c_fc\.(?P<p>weight|bias)', _GPT2_LAYER_OUT + '/ffn/wi/{p}',
     'same'),
    (rf'{_GPT2_LAYER}mlp\.c_proj\.(?P<p>weight|bias)', _GPT2_LAYER_OUT + '/ffn/wo/{p}',
     'same'),
    (rf'ln_f\.{_LN}', 'final_norm/{norm}', 'same'),
    (r'lm_head\.weight', 'output_projection/kernel', 'untied_linear'),
)
_LLAMA_LAYER = r'layers\.(?P<i>\d+)\.'
_LLAMA_LAYER_OUT = 'stack/layers_{i}'
_LLAMA_PROJ = {'q': 'query', 'k': 'key', 'v': 'value'}
_LLAMA_MLP = {'gate': 'w1', 'up': 'w3', 'down': 'w2'}
_LLAMA_RULES = (
    (r'embed_tokens\.weight', 'token_embedding/embedding', 'same'),
    (rf'{_LLAMA_LAYER}input_layernorm\.weight',
     _LLAMA_LAYER_OUT + '/attention_residual/norm/scale', 'same'),
    (rf'{_LLAMA_LAYER}self_attn\.(?P<llama_proj>q|k|v)_proj\.weight',
     _LLAMA_LAYER_OUT + '/attention/{llama_proj}/kernel', 'linear_to_heads'),
    (rf'{_LLAMA_LAYER}self_attn\.o_proj\.weight',
     _LLAMA_LAYER_OUT + '/attention/out/kernel', 'linear_from_heads'),
    (rf'{_LLAMA_LAYER}self_attn\.rotary_emb\.inv_freq', None, None),  # buffer
    (rf'{_LLAMA_LAYER}post_attention_layernorm\.weight',
     _LLAMA_LAYER_OUT + '/ffn_residual/norm/scale', 'same'),
    (rf'{_LLAMA_LAYER}mlp\.(?P<llama_mlp>gate|up|down)_proj\.weight',
     _LLAMA_LAYER_OUT + '/ffn/{llama_mlp}/kernel', 'linear'),
    (r'norm\.weight', 'final_norm/scale', 'same'),
    (r'rotary_emb\.inv_freq', None, None),  # buffer
    (r'lm_head\.weight', 'output_projection/kernel', 'untied_linear'),
)


def _to_heads(cfg, x):  # [..., h * hd] -> [..., h, hd]; h: query or kv heads
  return x.reshape(*x.shape[:-1], -1, cfg.head_dim)


def _from_heads(cfg, x):  # [d, out] -> [h, hd, out]
  return x.reshape(cfg.num_heads, cfg.head_dim, x.shape[-1])


_TRANSFORMS = {
    'same': lambda cfg, t: t,
    'linear': lambda cfg, t: t.T,
    'linear_to_heads': lambda cfg, t: _to_heads(cfg, t.T),
    'linear_from_heads': lambda cfg, t: _from_heads(cfg, t.T),
    'to_heads': _to_heads,
    'from_heads': _from_heads,
}


def _convert_tensor(template, transform, groups, cfg, tensor):
  """One HF tensor -> [(our path, array)] (empty: nothing to import)."""
  if template is None:
    return []
  if 'norm' in groups:
    groups['norm'] = _NORM_PARAM[groups['norm']]
  if 'p' in groups:
    groups['p'] = 'kernel' if groups['p'] == 'weight' else 'bias'
  if groups.get('llama_proj'):
    groups['llama_proj'] = _LLAMA_PROJ[groups['llama_proj']]
  if groups.get('llama_mlp'):
    groups['llama_mlp'] = _LLAMA_MLP[groups['llama_mlp']]
  if transform == 'split_qkv_to_heads':  # GPT-2 c_attn packs q, k, v
    parts = np.split(tensor, 3, axis=-1)
    return [(template.format(proj=proj, **groups), _to_heads(cfg, part))
            for proj, part in zip(('query', 'key', 'value'), parts)]
  if transform == 'untied_linear':  # lm_head: the same tensor as wte if tied
    return [] if cfg.tie_output_embedding else [(template.format(**groups),
                                                  tensor.T)]
  return [(template.format(**groups), _TRANSFORMS[transform](cfg, tensor))]


def tensor_rules(model_name: str, model_type: str | None = None):
  """(compiled rules, name prefix to strip, values for {b}).

  model_type: the config.json's; 'llama' picks the Llama layout of a
  'decoder_lm' (default: GPT-2's).
  """
  if model_type == 'llama':
    rules, prefix, b = _LLAMA_RULES, 'model.', ''
  elif model_name == 'decoder_lm':
    rules, prefix, b = _GPT2_RULES, 'transformer.', ''
  else:
    rules, prefix, b = _BERT_RULES, 'bert.', '' if model_name == 'bert' else 'bert/'
  return [(re.compile(r), t, f) for r, t, f in rules], prefix, b


def convert_state_dict(state: dict, cfg: ModelConfig, model_name: str,
                       source: str = 'checkpoint',
                       model_type: str | None = None) -> dict:
  """HF tensors -> our nested params for `registry.build(model_name, cfg)`.

  model_type: the config.json's, which picks the layout (tensor_rules).

  Raises CheckpointMismatchError naming unexpected tensors and missing
  parameters, or a parameter whose shape differs (with both shapes).
  """
  rules, prefix, b = tensor_rules(model_name, model_type)
  converted, origin, unexpected = {}, {}, []
  for key, tensor in state.items():
    name = key[len(prefix):] if key.startswith(prefix) else key
    for pattern, template, transform in rules:
      m = pattern.fullmatch(name)
      if m:
        for path, value in _convert_tensor(template, transform,
                                           dict(m.groupdict(), b=b), cfg,
                                           np.asarray(tensor)):
          converted[path] = value
          origin[path] = key
        break
    else:
      unexpected.append(key)
  return fit_params(converted, origin, unexpected, cfg, model_name, source)


def fit_params(converted: dict, origin: dict, unexpected: list,
               cfg: ModelConfig, model_name: str, source: str) -> dict:
  """Arrays by our '/'-joined paths (`origin`: each one's HF tensor) -> the
  params of `registry.build(model_name, cfg)`, all of them at their shapes."""
  layer_cfg = cfg.replace(scan_layers=False)
  expected = {'/'.join(k): v for k, v in traverse_util.flatten_dict(
      registry.param_shapes(model_name, layer_cfg)).items()}
  unexpected += [origin[p] for p in converted if p not in expected]
  missing = [p for p in expected if p not in converted]
  if unexpected or missing:
    lines = [f'{source} does not fit model {model_name!r}:']
    if unexpected:
      lines.append(f'  unexpected tensors {list_names(unexpected)}')
    if missing:
      lines.append(f'  missing parameters {list_names(missing)}')
    raise CheckpointMismatchError('\n'.join(lines))
  params = {}
  for path, shape in expected.items():
    value = converted[path]
    if value.shape != shape.shape:
      raise CheckpointMismatchError(
          f'{source}: parameter {path} expects shape {tuple(shape.shape)} but '
          f'tensor {origin[path]} gives {tuple(value.shape)}')
    params[tuple(path.split('/'))] = value.astype(shape.dtype)
  params = traverse_util.unflatten_dict(params)
  if cfg.scan_layers:
    params = stack_layers(params)
  return jax.tree.map(jnp.asarray, params)


def stack_layers(params):
  """{'layers_0': p0, 'layers_1': p1, ...} -> {'layers': stacked on axis 0}
  wherever it occurs: the layout of `LayerStack` with scan_layers=True."""
  if not isinstance(params, dict):
    return params
  layer_keys = [k for k in params if re.fullmatch(r'layers_\d+', k)]
  out = {k: stack_layers(v) for k, v in params.items() if k not in layer_keys}
  if layer_keys:
    layers = [params[f'layers_{i}'] for i in range(len(layer_keys))]
    out['layers'] = jax.tree.map(lambda *xs: np.stack(xs), *layers)
  return out


def unstack_layers(params):
  """The inverse of `stack_layers`."""
  if not isinstance(params, dict):
    return params
  out = {k: unstack_layers(v) for k, v in params.items() if k != 'layers'}
  if 'layers' in params:
    n = jax.tree.leaves(params['layers'])[0].shape[0]
    for i in range(n):
      out[f'layers_{i}'] = jax.tree.map(lambda x: x[i], params['layers'])
  return out


def load_hf_checkpoint(path: str, **overrides) -> HFCheckpoint:
  """A Hugging Face checkpoint directory -> (ModelConfig, params, model_name).

  overrides: ModelConfig fields to change (e.g. dtype='bfloat16',
  scan_layers=True, dropout_rate=0.0); shapes must stay those of the
  checkpoint. `model_name` is the registry name of the architecture.
  """
  hf = read_hf_config(path)
  if hf.get('model_type') == 't5':  # hf_import_t5 imports this module
    from models import hf_import_t5  # pylint: disable=g-import-not-at-top
    return hf_import_t5.load_t5_checkpoint(path, hf, **overrides)
  cfg, model_name = model_config_from_hf(hf, **overrides)
  architecture = (hf.get('architectures') or ['?'])[0]
  params = convert_state_dict(read_state_dict(path), cfg, model_name,
                              source=f'{path} ({architecture})',
                              model_type=hf.get('model_type'))
  return HFCheckpoint(cfg, params, model_name)
