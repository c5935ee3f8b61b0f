"""T5 (`model_type` 't5': T5ForConditionalGeneration) <-> the registry's
'encoder_decoder' with position_embedding='t5_relative'.

T5 v1.0 (t5-small ...: ReLU feed-forward, output tied to the shared
embedding and read from the decoder output times d_model^-0.5) and v1.1
(flan-t5, t5-v1_1-*: gated GELU 'gelu_new' = our 'gelu_tanh', an lm_head of
its own, no rescale).

Which output layer on import: transformers 5 saves v1.1 models without
`lm_head` and ties it (config `scale_decoder_outputs` says whether to
rescale); the hub's v1.1 checkpoints hold an `lm_head.weight` different from
`shared.weight` (`tie_word_embeddings: false`). So the output is untied
exactly when the checkpoint holds an lm_head that differs from the shared
table. Export writes tied models only: transformers 5's T5 always ties
lm_head to the shared table.

Tensor names: `{encoder,decoder}.block.{i}.layer.{j}.*`, where j is
self-attention (0), cross-attention (1, decoder), feed-forward (last);
`block.0`'s self-attention holds the stack's `relative_attention_bias`
[buckets, heads], which is our `{encoder,decoder}/relative_attention_bias`.
"""
import numpy as np

from errors import UserError
from models.config import ModelConfig
from models.hf import tensor_rules as tr

MODEL_TYPE = 't5'
ARCHITECTURES = {'T5ForConditionalGeneration': 'encoder_decoder'}
EXPORTED_ARCHITECTURE = 'T5ForConditionalGeneration'


# --------------------------------------------------------------- config --
def t5_model_config(hf: dict, untied_head: bool, **overrides) -> ModelConfig:
  """config.json of a T5 -> ModelConfig; `untied_head`: the checkpoint has
  an lm_head of its own. overrides: fields that keep the shapes."""
  d_model, num_heads = hf.get('d_model', 512), hf.get('num_heads', 8)
  d_kv = hf.get('d_kv', 64)
  if d_kv * num_heads != d_model:
    raise UserError(f'T5 d_kv={d_kv} is not d_model/num_heads='
                    f'{d_model}/{num_heads}: not supported')
  for name in ('pad_token_id', 'decoder_start_token_id'):
    if hf.get(name) not in (0, None):
      raise UserError(f'T5 {name}={hf[name]} is not supported (0: the '
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
      activation=tr.activation(act),
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


def has_own_lm_head(state: dict) -> bool:
  """The checkpoint's lm_head is not a copy of the shared embedding."""
  if 'lm_head.weight' not in state:
    return False
  return 'shared.weight' not in state or not np.array_equal(
      np.asarray(state['lm_head.weight']), np.asarray(state['shared.weight']))


def model_config(hf: dict, state: dict | None = None,
                 **overrides) -> tuple[ModelConfig, str]:
  """`state`: the checkpoint's tensors, which say whether the output layer
  is untied (None: tied)."""
  architecture = (hf.get('architectures') or [EXPORTED_ARCHITECTURE])[0]
  if architecture not in ARCHITECTURES:
    raise UserError(f'T5 architecture {architecture} is not supported '
                    f'({EXPORTED_ARCHITECTURE} only)')
  untied = has_own_lm_head(state) if state is not None else False
  return t5_model_config(hf, untied, **overrides), 'encoder_decoder'


def exports(cfg: ModelConfig, name: str) -> bool:
  return name == 'encoder_decoder' and cfg.position_embedding == 't5_relative'


def _feed_forward_proj(cfg: ModelConfig) -> str:
  if cfg.ffn_kind == 'gated' and cfg.activation == 'gelu_tanh':
    return 'gated-gelu'  # transformers' name for gated gelu_new
  act = tr.hf_activation(cfg.activation)
  return f'gated-{act}' if cfg.ffn_kind == 'gated' else act


def hf_config(cfg: ModelConfig, name: str, **token_ids) -> dict:
  del name
  if not cfg.tie_output_embedding:
    raise tr.ExportError(
        'model.tie_output_embedding=False cannot be exported: transformers '
        '5 T5ForConditionalGeneration ties lm_head to the shared embedding')
  hf = dict(
      model_type=MODEL_TYPE, architectures=[EXPORTED_ARCHITECTURE],
      vocab_size=cfg.vocab_size, d_model=cfg.d_model, d_kv=cfg.head_dim,
      d_ff=cfg.d_ff, num_layers=cfg.num_layers,
      num_decoder_layers=cfg.decoder_layers, num_heads=cfg.num_heads,
      relative_attention_num_buckets=cfg.relative_attention_num_buckets,
      relative_attention_max_distance=cfg.relative_attention_max_distance,
      dropout_rate=cfg.dropout_rate, layer_norm_epsilon=cfg.layer_norm_epsilon,
      feed_forward_proj=_feed_forward_proj(cfg), tie_word_embeddings=True,
      scale_decoder_outputs=cfg.scale_decoder_output, is_encoder_decoder=True,
      pad_token_id=0, decoder_start_token_id=0, dtype='float32',
      **token_ids)
  tr.check_round_trip(cfg, lambda: model_config(hf)[0],
                      EXPORTED_ARCHITECTURE, tr.UNCHECKED + _IRRELEVANT)
  return hf


# max_len only sizes the decoding cache of relative positions.
_IRRELEVANT = ('max_len', 'rope_base')


# -------------------------------------------------------------- tensors --
def _attention(stack: str, j: int, kind: str, ours: str):
  """Rules of one attention sub-layer (j) of every block of `stack`."""
  layer = rf'{stack}\.block\.(?P<i>\d+)\.layer\.{j}\.'
  out = f'{stack}/stack/layers_{{i}}/'
  return (
      (layer + r'layer_norm\.weight', out + f'{ours}_residual/norm/scale',
       'same'),
      (layer + rf'{kind}\.(?P<proj>q|k|v)\.weight',
       out + ours + '/{proj}/kernel', 'linear_to_heads'),
      (layer + rf'{kind}\.o\.weight', out + ours + '/out/kernel',
       'linear_from_heads'),
  )


def _feed_forward(stack: str, j: int):
  layer = rf'{stack}\.block\.(?P<i>\d+)\.layer\.{j}\.'
  out = f'{stack}/stack/layers_{{i}}/'
  return (
      (layer + r'layer_norm\.weight', out + 'ffn_residual/norm/scale',
       'same'),
      (layer + r'DenseReluDense\.(?P<ffn>wi_0|wi_1|wi|wo)\.weight',
       out + 'ffn/{ffn}/kernel', 'linear'),
  )


RULES = (
    (r'shared\.weight', 'token_embedding/embedding', 'same'),
    (r'(encoder|decoder)\.embed_tokens\.weight', None, None),  # tied copies
    (r'lm_head\.weight', 'output_projection/kernel', 'untied_linear'),
    (r'(?P<stack>encoder|decoder)\.final_layer_norm\.weight',
     '{stack}/final_norm/scale', 'same'),
    (r'encoder\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias'
     r'\.weight', 'encoder/relative_attention_bias', 'same'),
    (r'decoder\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias'
     r'\.weight', 'decoder/relative_attention_bias', 'same'),
    # In old checkpoints; T5 never uses it.
    (r'decoder\.block\.\d+\.layer\.1\.EncDecAttention\.'
     r'relative_attention_bias\.weight', None, None),
    *_attention('encoder', 0, 'SelfAttention', 'attention'),
    *_feed_forward('encoder', 1),
    *_attention('decoder', 0, 'SelfAttention', 'self_attention'),
    *_attention('decoder', 1, 'EncDecAttention', 'cross_attention'),
    *_feed_forward('decoder', 2),
)
_PROJ = {'q': 'query', 'k': 'key', 'v': 'value'}


def layout(cfg: ModelConfig) -> tr.Layout:
  ffn = ({'wi_0': 'w1', 'wi_1': 'w3', 'wo': 'w2'} if cfg.ffn_kind == 'gated'
         else {'wi': 'wi', 'wo': 'wo'})
  return tr.Layout(RULES, {'proj': _PROJ, 'ffn': ffn})


def import_params(state: dict, cfg: ModelConfig, name: str,
                  source: str) -> dict:
  return tr.import_params(state, layout(cfg), cfg, name, source)


def export_tensors(params, cfg: ModelConfig, name: str) -> dict:
  return tr.export_tensors(tr.flat_params(params), layout(cfg), name)
