"""Marian (`model_type` 'marian': MarianMTModel) <-> the registry's
'encoder_decoder' of Vaswani et al. 2017: post-LN, sinusoidal positions,
one token table for source, target and output, embeddings scaled by
sqrt(d_model), ReLU (or another) dense feed-forward, biases.

Marian lays its sinusoidal table out as all sines then all cosines, ours
interleaves them (sin, cos, sin, ...; embeddings.sinusoidal_positions). The
two differ by a fixed permutation of the d_model channels; since every
other operation treats channels alike (LayerNorm statistics are sums over
them), permuting the 'embed' axis of every parameter gives the same
function with Marian's table. transformers builds that table itself (it
is not in the file), and its LayerNorms have eps 1e-5 (nn.LayerNorm's
default, not a config field), so a model with another
model.layer_norm_epsilon fails in one line naming it. `final_logits_bias`
is written as zeros and must be zero on import.

Padding and the first decoder input are token 0 here (pad_token_id and
decoder_start_token_id 0); the hub's opus-mt models use another id.
"""
import numpy as np
from flax import traverse_util

from errors import UserError
from models import registry
from models.config import ModelConfig
from models.hf import tensor_rules as tr

MODEL_TYPE = 'marian'
ARCHITECTURES = {'MarianMTModel': 'encoder_decoder'}
EXPORTED_ARCHITECTURE = 'MarianMTModel'
LAYER_NORM_EPSILON = 1e-5  # torch.nn.LayerNorm's, which Marian uses


# --------------------------------------------------------------- config --
def model_config(hf: dict, state=None, **overrides) -> tuple[ModelConfig,
                                                              str]:
  del state
  architecture = (hf.get('architectures') or [EXPORTED_ARCHITECTURE])[0]
  if architecture not in ARCHITECTURES:
    raise UserError(f'Marian architecture {architecture} is not supported '
                    f'({EXPORTED_ARCHITECTURE} only)')
  for name in ('pad_token_id', 'decoder_start_token_id'):
    if hf.get(name) != 0:
      raise UserError(f'Marian {name}={hf.get(name)} is not supported (0: '
                      'the padding and first decoder input here)')
  if not hf.get('share_encoder_decoder_embeddings', True):
    raise UserError('Marian share_encoder_decoder_embeddings=False is not '
                    'supported')
  for encoder, decoder in (('encoder_attention_heads',
                            'decoder_attention_heads'),
                           ('encoder_ffn_dim', 'decoder_ffn_dim')):
    if hf.get(encoder, 16) != hf.get(decoder, 16):
      raise UserError(f'Marian {encoder}={hf.get(encoder)} and {decoder}='
                      f'{hf.get(decoder)} differ: not supported')
  num_layers = hf.get('encoder_layers', 12)
  decoder_layers = hf.get('decoder_layers', 12)
  fields = dict(
      vocab_size=hf['vocab_size'], d_model=hf['d_model'],
      num_heads=hf.get('encoder_attention_heads', 16),
      d_ff=hf.get('encoder_ffn_dim', 4096), num_layers=num_layers,
      num_decoder_layers=0 if decoder_layers == num_layers else decoder_layers,
      dropout_rate=hf.get('dropout', 0.1),
      attention_dropout_rate=hf.get('attention_dropout', 0.0),
      activation_dropout_rate=hf.get('activation_dropout', 0.0),
      activation=tr.activation(hf.get('activation_function', 'gelu')),
      ffn_kind='dense', norm_kind='layer', norm_position='post',
      final_layer_norm=False, embedding_layer_norm=False,
      layer_norm_epsilon=LAYER_NORM_EPSILON,
      position_embedding='sinusoidal', max_len=hf.get(
          'max_position_embeddings', 1024),
      type_vocab_size=0, share_embeddings=True,
      tie_output_embedding=hf.get('tie_word_embeddings', True),
      scale_embedding=hf.get('scale_embedding', False),
      scale_attention_logits=True, scale_decoder_output=False, use_bias=True,
      init_std=hf.get('init_std', 0.02))
  fields.update(overrides)
  return ModelConfig(**fields), 'encoder_decoder'


def exports(cfg: ModelConfig, name: str) -> bool:
  return name == 'encoder_decoder' and cfg.position_embedding != 't5_relative'


def hf_config(cfg: ModelConfig, name: str, **token_ids) -> dict:
  del name
  if cfg.d_model % 2:
    raise tr.ExportError(f'model.d_model={cfg.d_model} cannot be exported: '
                         'Marian interleaves sines and cosines in pairs')
  hf = dict(
      model_type=MODEL_TYPE, architectures=[EXPORTED_ARCHITECTURE],
      vocab_size=cfg.vocab_size, decoder_vocab_size=cfg.vocab_size,
      d_model=cfg.d_model, encoder_layers=cfg.num_layers,
      decoder_layers=cfg.decoder_layers,
      encoder_attention_heads=cfg.num_heads,
      decoder_attention_heads=cfg.num_heads, encoder_ffn_dim=cfg.d_ff,
      decoder_ffn_dim=cfg.d_ff,
      activation_function=tr.hf_activation(cfg.activation),
      max_position_embeddings=cfg.max_len,
      scale_embedding=cfg.scale_embedding, dropout=cfg.dropout_rate,
      attention_dropout=cfg.attention_dropout_rate,
      activation_dropout=cfg.activation_dropout_rate,
      init_std=cfg.init_std or 0.02, share_encoder_decoder_embeddings=True,
      tie_word_embeddings=cfg.tie_output_embedding, is_encoder_decoder=True,
      pad_token_id=0, decoder_start_token_id=0, bos_token_id=None,
      # Marian's default forces EOS id 0 at max_length: our decoding
      # forces nothing.
      forced_eos_token_id=None, dtype='float32', **token_ids)
  tr.check_round_trip(cfg, lambda: model_config(hf)[0],
                      EXPORTED_ARCHITECTURE, tr.UNCHECKED + _IRRELEVANT)
  return hf


# Fields a model with sinusoidal positions never reads.
_IRRELEVANT = ('rope_base', 'relative_attention_num_buckets',
               'relative_attention_max_distance')


# -------------------------------------------------------------- tensors --
_LN = r'(?P<norm>weight|bias)'


def _attention(stack: str, hf: str, ours: str):
  layer = rf'{stack}\.layers\.(?P<i>\d+)\.'
  out = f'{stack}/stack/layers_{{i}}/{ours}'
  return (
      (layer + rf'{hf}\.(?P<proj>q|k|v)_proj\.weight',
       out + '/{proj}/kernel', 'linear_to_heads'),
      (layer + rf'{hf}\.(?P<proj>q|k|v)_proj\.bias', out + '/{proj}/bias',
       'to_heads'),
      (layer + rf'{hf}\.out_proj\.weight', out + '/out/kernel',
       'linear_from_heads'),
      (layer + rf'{hf}\.out_proj\.bias', out + '/out/bias', 'same'),
      (layer + rf'{hf}_layer_norm\.{_LN}', out + '_residual/norm/{norm}',
       'same'),
  )


def _feed_forward(stack: str):
  layer = rf'{stack}\.layers\.(?P<i>\d+)\.'
  out = f'{stack}/stack/layers_{{i}}/'
  return (
      (layer + r'(?P<fc>fc1|fc2)\.weight', out + 'ffn/{fc}/kernel', 'linear'),
      (layer + r'(?P<fc>fc1|fc2)\.bias', out + 'ffn/{fc}/bias', 'same'),
      (layer + rf'final_layer_norm\.{_LN}', out + 'ffn_residual/norm/{norm}',
       'same'),
  )


RULES = (
    (r'shared\.weight', 'token_embedding/embedding', 'same'),
    # Tied copies of shared, and the table transformers builds itself.
    (r'(encoder|decoder)\.(embed_tokens|embed_positions)\.weight', None,
     None),
    (r'lm_head\.weight', 'output_projection/kernel', 'untied_linear'),
    *_attention('encoder', 'self_attn', 'attention'),
    *_feed_forward('encoder'),
    *_attention('decoder', 'self_attn', 'self_attention'),
    *_attention('decoder', 'encoder_attn', 'cross_attention'),
    *_feed_forward('decoder'),
)
LAYOUT = tr.Layout(RULES, {'proj': {'q': 'query', 'k': 'key', 'v': 'value'},
                           'norm': {'weight': 'scale', 'bias': 'bias'},
                           'fc': {'fc1': 'wi', 'fc2': 'wo'}},
                   strip='model.')


def _marian_channels(d_model: int) -> np.ndarray:
  """Marian's channel m is our channel order[m]: sines, then cosines."""
  return np.concatenate([np.arange(0, d_model, 2), np.arange(1, d_model, 2)])


def _permute_embed(flat: dict, cfg: ModelConfig, name: str,
                   order: np.ndarray) -> dict:
  """Every parameter's 'embed' axes (models/logical_axes.py) indexed by
  `order`."""
  axes = traverse_util.flatten_dict(
      registry.param_axes(name, cfg.replace(scan_layers=False)), sep='/')
  out = {}
  for path, value in flat.items():
    for axis, logical in enumerate(axes[path]):
      if logical == 'embed':
        value = np.take(value, order, axis=axis)
    out[path] = value
  return out


def import_params(state: dict, cfg: ModelConfig, name: str,
                  source: str) -> dict:
  state = dict(state)
  bias = state.pop('final_logits_bias', None)
  if bias is not None and np.any(np.asarray(bias)):
    raise UserError(f'{source}: final_logits_bias is not zero: not '
                    'supported (the output layer has no bias here)')
  converted, origin, unexpected = tr.import_tensors(state, LAYOUT, cfg)
  ours = np.argsort(_marian_channels(cfg.d_model))
  expected = set(traverse_util.flatten_dict(registry.param_axes(
      name, cfg.replace(scan_layers=False)), sep='/'))
  known = {p: v for p, v in converted.items() if p in expected}
  converted.update(_permute_embed(known, cfg, name, ours))
  return tr.fit_params(converted, origin, unexpected, cfg, name, source)


def export_tensors(params, cfg: ModelConfig, name: str) -> dict:
  flat = tr.with_zero_biases(tr.flat_params(params), cfg, name)
  flat = _permute_embed(flat, cfg, name, _marian_channels(cfg.d_model))
  state = tr.export_tensors(
      flat, LAYOUT, name,
      lambda hf_name, _: '' if hf_name.startswith('lm_head') else 'model.')
  state['final_logits_bias'] = np.zeros((1, cfg.vocab_size), np.float32)
  return state
