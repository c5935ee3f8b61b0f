"""Import of Hugging Face T5 checkpoints (`T5ForConditionalGeneration`).

T5 v1.0 (t5-small ...: ReLU feed-forward, output tied to the shared
embedding and read from the decoder output times d_model^-0.5) and v1.1
(flan-t5, t5-v1_1-*: gated GELU 'gelu_new' = our 'gelu_tanh', an lm_head of
its own, no rescale) become the registry's 'encoder_decoder' with
position_embedding='t5_relative'. Reached through
`hf_import.load_hf_checkpoint` (and so `config.init_from`), which hands
config.json's with model_type 't5' to `load_t5_checkpoint`.

Which output layer: transformers 5 saves v1.1 models without `lm_head` and
ties it (config `scale_decoder_outputs` says whether to rescale); the hub's
v1.1 checkpoints hold an `lm_head.weight` different from `shared.weight`
(`tie_word_embeddings: false`). So the output is untied exactly when the
checkpoint holds an lm_head that differs from the shared table.

Tensor names: `{encoder,decoder}.block.{i}.layer.{j}.*`, where j is
self-attention (0), cross-attention (1, decoder), feed-forward (last);
`block.0`'s self-attention holds the stack's `relative_attention_bias`
[buckets, heads], which is our `{encoder,decoder}/relative_attention_bias`.
"""
import re

import numpy as np

from models import hf_import
from models.config import ModelConfig

_LAYER = re.compile(r'(?P<stack>encoder|decoder)\.block\.(?P<i>\d+)\.'
                    r'layer\.(?P<j>\d)\.(?P<rest>.+)')
_ATTENTION = {('encoder', '0'): 'attention', ('decoder', '0'): 'self_attention',
              ('decoder', '1'): 'cross_attention'}
_FFN = {('encoder', '1'), ('decoder', '2')}
_PROJ = {'q': ('query', 'linear_to_heads'), 'k': ('key', 'linear_to_heads'),
         'v': ('value', 'linear_to_heads'), 'o': ('out', 'linear_from_heads')}
_UNUSED = object()  # a tensor with nothing to import (tied copies)


def t5_model_config(hf: dict, untied_head: bool, **overrides) -> ModelConfig:
  """config.json of a T5 -> ModelConfig; `untied_head`: the checkpoint has
  an lm_head of its own. overrides: fields that keep the shapes."""
  d_model, num_heads = hf.get('d_model', 512), hf.get('num_heads', 8)
  d_kv = hf.get('d_kv', 64)
  if d_kv * num_heads != d_model:
    raise ValueError(f'T5 d_kv={d_kv} is not d_model/num_heads='
                     f'{d_model}/{num_heads}: not supported')
  for name in ('pad_token_id', 'decoder_start_token_id'):
    if hf.get(name) not in (0, None):
      raise ValueError(f'T5 {name}={hf[name]} is not supported (0: the '
                       'padding and first decoder input here)')
  proj = hf.get('feed_forward_proj', 'relu')
  gated = proj.startswith('gated-')
  # transformers maps 'gated-gelu' to gelu_new (tanh), a bare 'gelu' to erf.
  act = 'gelu_new' if proj == 'gated-gelu' else proj.split('-')[-1]
  num_layers = hf.get('num_layers', 6)
  decoder_layers = hf.get('num_decoder_layers') or num_layers
  scale = hf.get('scale_decoder_outputs',
                 hf.get('tie_word_embeddings', True) is not False)
  fields = dict(
      vocab_size=hf.get('vocab_size', 32128), d_model=d_model,
      num_heads=num_heads, d_ff=hf.get('d_ff', 2048), num_layers=num_layers,
      num_decoder_layers=0 if decoder_layers == num_layers else decoder_layers,
      dropout_rate=hf.get('dropout_rate', 0.1), attention_dropout_rate=0.0,
      activation=hf_import._activation(act),  # pylint: disable=protected-access
      ffn_kind='gated' if gated else 'dense', norm_kind='rms',
      norm_position='pre', final_layer_norm=True,
      layer_norm_epsilon=hf.get('layer_norm_epsilon', 1e-6),
      position_embedding='t5_relative',
      relative_attention_num_buckets=hf.get('relative_attention_num_buckets',
                                            32),
      relative_attention_max_distance=hf.get(
          'relative_attention_max_distance', 128),
      scale_attention_logits=False, max_len=512, type_vocab_size=0,
      share_embeddings=True, tie_output_embedding=not untied_head,
      scale_decoder_output=bool(scale), scale_embedding=False,
      use_bias=False, init_std=0.0)
  fields.update(overrides)
  return ModelConfig(**fields)


def _our_path(name: str, cfg: ModelConfig):
  """HF tensor name -> (our '/'-joined path, transform name), _UNUSED, or
  None (a tensor this layout does not know)."""
  if name == 'shared.weight':
    return 'token_embedding/embedding', 'same'
  if name in ('encoder.embed_tokens.weight', 'decoder.embed_tokens.weight'):
    return _UNUSED
  if name == 'lm_head.weight':
    return _UNUSED if cfg.tie_output_embedding else (
        'output_projection/kernel', 'linear')
  m = re.fullmatch(r'(encoder|decoder)\.final_layer_norm\.weight', name)
  if m:
    return f'{m[1]}/final_norm/scale', 'same'
  m = _LAYER.fullmatch(name)
  if not m:
    return None
  stack, i, j, rest = m['stack'], m['i'], m['j'], m['rest']
  layer = f'{stack}/stack/layers_{i}/'
  attention = _ATTENTION.get((stack, j))
  if rest == 'layer_norm.weight' and (attention or (stack, j) in _FFN):
    return layer + f'{attention or "ffn"}_residual/norm/scale', 'same'
  if attention:
    kind = 'EncDecAttention' if attention == 'cross_attention' else (
        'SelfAttention')
    p = re.fullmatch(kind + r'\.([qkvo])\.weight', rest)
    if p:
      ours, transform = _PROJ[p[1]]
      return layer + f'{attention}/{ours}/kernel', transform
    if rest == f'{kind}.relative_attention_bias.weight':
      if attention == 'cross_attention':
        return _UNUSED  # in old checkpoints; T5 never uses it
      if i == '0':
        return f'{stack}/relative_attention_bias', 'same'
  if (stack, j) in _FFN:
    names = ({'wi_0': 'w1', 'wi_1': 'w3', 'wo': 'w2'}
             if cfg.ffn_kind == 'gated' else {'wi': 'wi', 'wo': 'wo'})
    p = re.fullmatch(r'DenseReluDense\.(\w+)\.weight', rest)
    if p and p[1] in names:
      return layer + f'ffn/{names[p[1]]}/kernel', 'linear'
  return None


def convert_t5_state_dict(state: dict, cfg: ModelConfig,
                          source: str = 'checkpoint') -> dict:
  """HF T5 tensors -> params of `registry.build('encoder_decoder', cfg)`
  (hf_import.CheckpointMismatchError for tensors or parameters left over)."""
  converted, origin, unexpected = {}, {}, []
  for key, tensor in state.items():
    target = _our_path(key, cfg)
    if target is None:
      unexpected.append(key)
    elif target is not _UNUSED:
      path, transform = target
      converted[path] = hf_import._TRANSFORMS[transform](  # pylint: disable=protected-access
          cfg, np.asarray(tensor))
      origin[path] = key
  return hf_import.fit_params(converted, origin, unexpected, cfg,
                              'encoder_decoder', source)


def has_own_lm_head(state: dict) -> bool:
  """The checkpoint's lm_head is not a copy of the shared embedding."""
  if 'lm_head.weight' not in state:
    return False
  return 'shared.weight' not in state or not np.array_equal(
      np.asarray(state['lm_head.weight']), np.asarray(state['shared.weight']))


def load_t5_checkpoint(path: str, hf: dict | None = None,
                       **overrides) -> hf_import.HFCheckpoint:
  """A T5ForConditionalGeneration directory -> (ModelConfig, params,
  'encoder_decoder'); `hf`: its config.json if already read."""
  hf = hf or hf_import.read_hf_config(path)
  architecture = (hf.get('architectures') or
                  ['T5ForConditionalGeneration'])[0]
  if architecture != 'T5ForConditionalGeneration':
    raise ValueError(f'{path}: T5 architecture {architecture} is not '
                     'supported (T5ForConditionalGeneration only)')
  state = hf_import.read_state_dict(path)
  cfg = t5_model_config(hf, has_own_lm_head(state), **overrides)
  params = convert_t5_state_dict(state, cfg, f'{path} ({architecture})')
  return hf_import.HFCheckpoint(cfg, params, 'encoder_decoder')
