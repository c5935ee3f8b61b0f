"""Export to the Hugging Face layout (BERT and GPT-2 families): the inverse
of models/hf_import.py, derived from its tables so the two cannot drift.

    export_hf_checkpoint(model_cfg, params, model_name, '/tmp/out')
    # -> /tmp/out/config.json, /tmp/out/model.safetensors

Registry model -> architecture: 'bert' -> BertModel, 'bert_pretraining' ->
BertForPreTraining, 'bert_mlm' -> BertForMaskedLM, 'bert_classifier' ->
BertForSequenceClassification, 'bert_token_classifier' ->
BertForTokenClassification, 'bert_qa' -> BertForQuestionAnswering,
'decoder_lm' -> GPT2LMHeadModel.

The config is checked by importing it back (hf_import.model_config_from_hf):
a field the layout cannot hold (rotary positions in GPT-2, a post-LN GPT, a
BERT without embedding LayerNorm ...) fails in one line naming it. Fields
that only matter in training or for speed (dropout, dtypes, remat, scan,
initialisation) are not checked. Tensors are written in float32.
"""
import json
import os
import re

import numpy as np
from flax import traverse_util

from models import hf_import
from models.config import ModelConfig

# Registry name -> architecture; of two for one name the later wins
# (GPT2LMHeadModel over GPT2Model: the export keeps the LM head).
ARCHITECTURE = {name: arch for arch, name in hf_import.ARCHITECTURES.items()}
# Decoder LMs import from GPT-2 and Llama; export writes the GPT-2 layout.
ARCHITECTURE['decoder_lm'] = 'GPT2LMHeadModel'
# Ours -> the Hugging Face name (the first import maps from).
_ACTIVATION = {}
# pylint: disable-next=protected-access
for _hf, _ours in hf_import._ACTIVATIONS.items():
  _ACTIVATION.setdefault(_ours, _hf)
# Fields that do not change what a trained model computes.
_UNCHECKED = ('dropout_rate', 'attention_dropout_rate',
              'activation_dropout_rate', 'dropout_bits', 'dropout_prng',
              'cpu_bf16_dots', 'dtype',
              'param_dtype', 'attention_impl', 'remat_policy', 'scan_layers',
              'init_std', 'scale_residual_init', 'num_decoder_layers',
              'share_embeddings', 'rope_base', 'num_labels')
# Inverses of the regex group values that import renames.
_GROUP_VALUES = {'norm': {'scale': 'weight', 'bias': 'bias'},
                 'p': {'kernel': 'weight', 'bias': 'bias'}}


_QKV = ('query', 'key', 'value')  # their order in GPT-2's c_attn


class ExportError(ValueError):
  """The model has no Hugging Face layout."""


def architecture(model_name: str) -> str:
  if model_name not in ARCHITECTURE:
    raise ExportError(f'model {model_name!r} has no Hugging Face layout '
                      f'(exportable: {", ".join(ARCHITECTURE)})')
  return ARCHITECTURE[model_name]


# --------------------------------------------------------------- config --
def hf_config(cfg: ModelConfig, model_name: str, **token_ids) -> dict:
  """The config.json dict of `cfg`; `token_ids` (pad_token_id, ...) are
  written as given. Raises ExportError naming a field it cannot hold."""
  arch = architecture(model_name)
  if cfg.activation not in _ACTIVATION:
    raise ExportError(f'model.activation={cfg.activation!r} has no Hugging '
                      'Face name')
  if model_name == 'decoder_lm':
    hf = dict(
        model_type='gpt2', vocab_size=cfg.vocab_size, n_embd=cfg.d_model,
        n_head=cfg.num_heads, n_inner=cfg.d_ff, n_layer=cfg.num_layers,
        n_positions=cfg.max_len, resid_pdrop=cfg.dropout_rate,
        embd_pdrop=cfg.dropout_rate,
        attn_pdrop=cfg.attention_dropout_rate,
        activation_function=_ACTIVATION[cfg.activation],
        layer_norm_epsilon=cfg.layer_norm_epsilon,
        tie_word_embeddings=cfg.tie_output_embedding)
  else:
    if not cfg.type_vocab_size:
      raise ExportError('model.type_vocab_size=0: Hugging Face BERT needs '
                        'token-type embeddings (>= 1)')
    hf = dict(
        model_type='bert', vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model, num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.d_ff, num_hidden_layers=cfg.num_layers,
        hidden_dropout_prob=cfg.dropout_rate,
        attention_probs_dropout_prob=cfg.attention_dropout_rate,
        hidden_act=_ACTIVATION[cfg.activation],
        layer_norm_eps=cfg.layer_norm_epsilon,
        max_position_embeddings=cfg.max_len,
        type_vocab_size=cfg.type_vocab_size,
        position_embedding_type='absolute')
    if model_name in ('bert_classifier', 'bert_token_classifier'):
      hf['id2label'] = {str(i): f'LABEL_{i}' for i in range(cfg.num_labels)}
      hf['label2id'] = {f'LABEL_{i}': i for i in range(cfg.num_labels)}
  hf.update(architectures=[arch], initializer_range=cfg.init_std or 0.02,
            dtype='float32', **token_ids)
  _check_round_trip(cfg, hf, arch)
  return hf


def _check_round_trip(cfg: ModelConfig, hf: dict, arch: str):
  """Import must give back every field that shapes the computation."""
  try:
    back, _ = hf_import.model_config_from_hf(hf)
  except ValueError as e:
    raise ExportError(f'{arch}: {e}') from None
  for name in cfg.__dataclass_fields__:
    if name in _UNCHECKED:
      continue
    ours, theirs = getattr(cfg, name), getattr(back, name)
    if ours != theirs:
      raise ExportError(
          f'model.{name}={ours!r} cannot be exported: the Hugging Face '
          f'{arch} layout has {name}={theirs!r}')


# -------------------------------------------------------------- tensors --
def _our_path_regex(template: str, b: str):
  """'{b}stack/layers_{i}/ffn/{p}' -> a regex with named groups."""
  parts = re.split(r'\{(\w+)\}', template.replace('{b}', b))
  return re.compile(''.join(
      re.escape(part) if k % 2 == 0 else f'(?P<{part}>[^/]+)'
      for k, part in enumerate(parts)))


def _hf_name_format(pattern: str) -> str:
  r"""'h\.(?P<i>\d+)\.ln_1\.(?P<norm>weight|bias)' -> 'h.{i}.ln_1.{norm}'."""
  name = re.sub(r'\(\?P<(\w+)>[^()]*\)', r'{\1}', pattern).replace('\\.', '.')
  if re.search(r'[\\()|\[\]*+?]', name):
    raise AssertionError(f'import rule {pattern!r} has no single inverse')
  return name


def _inverse_rules(model_name: str):
  """(our path regex, HF name format, HF regex, transform, on the
  backbone), one per import rule that fills a parameter."""
  rules, _, b = hf_import.tensor_rules(model_name)
  return [(_our_path_regex(template, b), _hf_name_format(pattern.pattern),
           pattern, transform, '{b}' in template)
          for pattern, template, transform in rules if template is not None]


def _hf_prefix(model_name: str, hf_name: str, on_backbone: bool) -> str:
  """Task models keep the backbone under 'bert.' / 'transformer.'."""
  if model_name == 'decoder_lm':
    return '' if hf_name.startswith('lm_head') else 'transformer.'
  return 'bert.' if on_backbone and model_name != 'bert' else ''


def _to_hf(transform: str, cfg: ModelConfig, x: np.ndarray) -> np.ndarray:
  """The inverse of hf_import._TRANSFORMS[transform]."""
  del cfg  # head counts are in the shapes
  if transform in ('same',):
    return x
  if transform in ('linear', 'untied_linear'):
    return x.T
  if transform == 'linear_to_heads':      # [in, h, hd] -> [h*hd, in]
    return x.reshape(x.shape[0], -1).T
  if transform == 'linear_from_heads':    # [h, hd, out] -> [out, h*hd]
    return x.reshape(-1, x.shape[-1]).T
  if transform == 'from_heads':           # [h, hd, out] -> [h*hd, out]
    return x.reshape(-1, x.shape[-1])
  if transform in ('to_heads', 'split_qkv_to_heads'):  # [..., h, hd]
    return x.reshape(*x.shape[:-2], -1)
  raise AssertionError(f'no inverse for transform {transform!r}')


def _hf_name(rules, path: str, model_name: str):
  """The first import rule whose inverse turns our `path` into a name that
  the rule itself reads back: (name, groups, transform, on_backbone)."""
  for ours, name_format, pattern, transform, on_backbone in rules:
    match = ours.fullmatch(path)
    if not match:
      continue
    groups = {k: _GROUP_VALUES.get(k, {}).get(v, v)
              for k, v in match.groupdict().items()}
    if transform == 'split_qkv_to_heads' and groups['proj'] not in _QKV:
      continue  # GPT-2's c_attn holds query, key, value but not 'out'
    name = name_format.format(**groups)
    if pattern.fullmatch(name):  # e.g. {proj} in 'attention/out' is not
      return name, groups, transform, on_backbone
  raise ExportError(f'parameter {path} of {model_name!r} has no place in '
                    'the Hugging Face layout')


def hf_state_dict(params, cfg: ModelConfig, model_name: str) -> dict:
  """Our parameters -> {Hugging Face tensor name: float32 array}."""
  architecture(model_name)
  rules = _inverse_rules(model_name)
  flat = traverse_util.flatten_dict(
      hf_import.unstack_layers(params), sep='/')
  state, qkv = {}, {}
  for path, value in flat.items():
    name, groups, transform, on_backbone = _hf_name(rules, path, model_name)
    tensor = _to_hf(transform, cfg, np.asarray(value, np.float32))
    name = _hf_prefix(model_name, name, on_backbone) + name
    if transform == 'split_qkv_to_heads':  # GPT-2 packs q, k, v in one
      qkv.setdefault(name, {})[groups['proj']] = tensor
    else:
      state[name] = tensor
  for name, parts in qkv.items():
    state[name] = np.concatenate([parts[p] for p in _QKV], axis=-1)
  return {k: np.ascontiguousarray(v) for k, v in state.items()}


def export_hf_checkpoint(cfg: ModelConfig, params, model_name: str,
                         path: str, **token_ids) -> list[str]:
  """Writes config.json and model.safetensors into `path`; returns the
  file names. `token_ids`: pad_token_id, bos_token_id, eos_token_id."""
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  config = hf_config(cfg, model_name, **token_ids)
  state = hf_state_dict(params, cfg, model_name)
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, 'config.json'), 'w', encoding='utf-8') as f:
    json.dump(config, f, indent=2, sort_keys=True)
    f.write('\n')
  save_file(state, os.path.join(path, 'model.safetensors'),
            metadata={'format': 'pt'})
  return ['config.json', 'model.safetensors']
