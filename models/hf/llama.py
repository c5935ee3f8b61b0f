"""Llama (`model_type` 'llama': LlamaForCausalLM) <-> the registry's
'decoder_lm' with RMSNorm, SwiGLU (or another gated FFN), grouped-query
attention, rotary positions and no biases.

HF Llama rotates the two halves of each head (rotate_half), the layout of
our `attention.rotary_embedding`, so q/k weights move unpermuted. Export
writes LlamaForCausalLM with `rope_parameters` (transformers 5) and no
lm_head when the output is tied.
"""
from errors import UserError
from models.config import ModelConfig
from models.hf import tensor_rules as tr

MODEL_TYPE = 'llama'
ARCHITECTURES = {'LlamaForCausalLM': 'decoder_lm'}
BASE_MODEL = 'decoder_lm'
EXPORTED_ARCHITECTURE = 'LlamaForCausalLM'


# --------------------------------------------------------------- config --
def _rope_base(hf: dict) -> float:
  """rope_theta from transformers 5 (`rope_parameters`) or 4 (top level,
  `rope_scaling`); only unscaled rotary positions are supported."""
  rope = hf.get('rope_parameters') or hf.get('rope_scaling') or {}
  kind = rope.get('rope_type', rope.get('type', 'default'))
  if kind != 'default':
    raise UserError(f'Llama rope_type={kind!r} is not supported (default '
                    'only)')
  return float(rope.get('rope_theta', hf.get('rope_theta', 10000.0)))


def model_config(hf: dict, state=None, **overrides) -> tuple[ModelConfig,
                                                              str]:
  del state
  for flag in ('attention_bias', 'mlp_bias'):
    if hf.get(flag):
      raise UserError(f'Llama {flag}=True is not supported')
  d_model, num_heads = hf['hidden_size'], hf['num_attention_heads']
  head_dim = hf.get('head_dim') or d_model // num_heads
  if head_dim * num_heads != d_model:
    raise UserError(f'Llama head_dim={head_dim} is not hidden_size/'
                    f'num_attention_heads={d_model}/{num_heads}')
  fields = dict(
      vocab_size=hf['vocab_size'], d_model=d_model, num_heads=num_heads,
      num_kv_heads=hf.get('num_key_value_heads') or num_heads,
      d_ff=hf['intermediate_size'], num_layers=hf['num_hidden_layers'],
      dropout_rate=0.0, attention_dropout_rate=hf.get('attention_dropout', 0.0),
      activation=tr.activation(hf.get('hidden_act', 'silu')),
      ffn_kind='gated', norm_kind='rms', norm_position='pre',
      final_layer_norm=True, layer_norm_epsilon=hf.get('rms_norm_eps', 1e-6),
      position_embedding='rope', rope_base=_rope_base(hf),
      max_len=hf.get('max_position_embeddings', 2048), type_vocab_size=0,
      tie_output_embedding=hf.get('tie_word_embeddings', False),
      scale_embedding=False, use_bias=False,
      init_std=hf.get('initializer_range', 0.02))
  fields.update(overrides)
  return ModelConfig(**fields), BASE_MODEL


def exports(cfg: ModelConfig, name: str) -> bool:
  return name == 'decoder_lm' and cfg.norm_kind == 'rms'


def hf_config(cfg: ModelConfig, name: str, **token_ids) -> dict:
  del name
  hf = dict(
      model_type=MODEL_TYPE, architectures=[EXPORTED_ARCHITECTURE],
      vocab_size=cfg.vocab_size, hidden_size=cfg.d_model,
      num_attention_heads=cfg.num_heads, num_key_value_heads=cfg.kv_heads,
      head_dim=cfg.head_dim, intermediate_size=cfg.d_ff,
      num_hidden_layers=cfg.num_layers,
      hidden_act=tr.hf_activation(cfg.activation),
      rms_norm_eps=cfg.layer_norm_epsilon,
      rope_parameters=dict(rope_type='default', rope_theta=cfg.rope_base),
      max_position_embeddings=cfg.max_len,
      attention_dropout=cfg.attention_dropout_rate,
      attention_bias=False, mlp_bias=False,
      tie_word_embeddings=cfg.tie_output_embedding,
      initializer_range=cfg.init_std or 0.02, dtype='float32', **token_ids)
  # num_kv_heads: 0 and num_heads are one model.
  back = lambda: model_config(hf)[0].replace(num_kv_heads=cfg.num_kv_heads) \
      if cfg.kv_heads == cfg.num_heads else model_config(hf)[0]
  tr.check_round_trip(cfg, back, EXPORTED_ARCHITECTURE,
                      tr.UNCHECKED + _IRRELEVANT)
  return hf


# Fields a decoder with rotary positions never reads.
_IRRELEVANT = ('num_decoder_layers', 'share_embeddings',
               'relative_attention_num_buckets',
               'relative_attention_max_distance')


# -------------------------------------------------------------- tensors --
_LAYER = r'layers\.(?P<i>\d+)\.'
_OUT = 'stack/layers_{i}'
RULES = (
    (r'embed_tokens\.weight', 'token_embedding/embedding', 'same'),
    (rf'{_LAYER}input_layernorm\.weight',
     _OUT + '/attention_residual/norm/scale', 'same'),
    (rf'{_LAYER}self_attn\.(?P<proj>q|k|v)_proj\.weight',
     _OUT + '/attention/{proj}/kernel', 'linear_to_heads'),
    (rf'{_LAYER}self_attn\.o_proj\.weight', _OUT + '/attention/out/kernel',
     'linear_from_heads'),
    (rf'{_LAYER}self_attn\.rotary_emb\.inv_freq', None, None),  # buffer
    (rf'{_LAYER}post_attention_layernorm\.weight',
     _OUT + '/ffn_residual/norm/scale', 'same'),
    (rf'{_LAYER}mlp\.(?P<mlp>gate|up|down)_proj\.weight',
     _OUT + '/ffn/{mlp}/kernel', 'linear'),
    (r'norm\.weight', 'final_norm/scale', 'same'),
    (r'rotary_emb\.inv_freq', None, None),  # buffer
    (r'lm_head\.weight', 'output_projection/kernel', 'untied_linear'),
)
LAYOUT = tr.Layout(RULES, {'proj': {'q': 'query', 'k': 'key', 'v': 'value'},
                           'mlp': {'gate': 'w1', 'up': 'w3', 'down': 'w2'}},
                   strip='model.')


def import_params(state: dict, cfg: ModelConfig, name: str,
                  source: str) -> dict:
  return tr.import_params(state, LAYOUT, cfg, name, source)


def export_tensors(params, cfg: ModelConfig, name: str) -> dict:
  return tr.export_tensors(
      tr.flat_params(params), LAYOUT, name,
      lambda hf_name, _: '' if hf_name.startswith('lm_head') else 'model.')
