"""GPT-2 (`model_type` 'gpt2': GPT2Model, GPT2LMHeadModel) <-> the
registry's 'decoder_lm' with LayerNorm, learned positions and a dense FFN.

GPT-2's Conv1D weights are already [in, out]; c_attn packs query, key and
value in one tensor. Export writes GPT2LMHeadModel (the backbone under
`transformer.`). A model without biases (nanoGPT's bias=False) exports
with zero biases, the same function.
"""
from errors import UserError
from models.config import ModelConfig
from models.hf import tensor_rules as tr

MODEL_TYPE = 'gpt2'
ARCHITECTURES = {'GPT2Model': 'decoder_lm', 'GPT2LMHeadModel': 'decoder_lm'}
BASE_MODEL = 'decoder_lm'
EXPORTED_ARCHITECTURE = 'GPT2LMHeadModel'


# --------------------------------------------------------------- config --
def model_config(hf: dict, state=None, **overrides) -> tuple[ModelConfig,
                                                              str]:
  del state
  for flag in ('scale_attn_by_inverse_layer_idx', 'reorder_and_upcast_attn'):
    if hf.get(flag):
      raise UserError(f'GPT-2 {flag}=True is not supported')
  if not hf.get('scale_attn_weights', True):
    raise UserError('GPT-2 scale_attn_weights=False is not supported')
  d_model = hf['n_embd']
  fields = dict(
      vocab_size=hf['vocab_size'], d_model=d_model,
      num_heads=hf['n_head'], d_ff=hf.get('n_inner') or 4 * d_model,
      num_layers=hf['n_layer'],
      dropout_rate=hf.get('resid_pdrop', 0.1),
      attention_dropout_rate=hf.get('attn_pdrop', 0.1),
      activation=tr.activation(hf.get('activation_function', 'gelu_new')),
      norm_position='pre', final_layer_norm=True,
      layer_norm_epsilon=hf.get('layer_norm_epsilon', 1e-5),
      position_embedding='learned', max_len=hf['n_positions'],
      type_vocab_size=0,
      tie_output_embedding=hf.get('tie_word_embeddings', True),
      scale_embedding=False, init_std=hf.get('initializer_range', 0.02))
  fields.update(overrides)
  return ModelConfig(**fields), BASE_MODEL


def exports(cfg: ModelConfig, name: str) -> bool:
  """The decoder LMs that are not Llama's (RMSNorm) export as GPT-2; what
  GPT-2 cannot hold (rotary positions, post-LN ...) then fails naming it."""
  return name == 'decoder_lm' and cfg.norm_kind != 'rms'


def hf_config(cfg: ModelConfig, name: str, **token_ids) -> dict:
  del name
  hf = dict(
      model_type=MODEL_TYPE, architectures=[EXPORTED_ARCHITECTURE],
      vocab_size=cfg.vocab_size, n_embd=cfg.d_model, n_head=cfg.num_heads,
      n_inner=cfg.d_ff, n_layer=cfg.num_layers, n_positions=cfg.max_len,
      resid_pdrop=cfg.dropout_rate, embd_pdrop=cfg.dropout_rate,
      attn_pdrop=cfg.attention_dropout_rate,
      activation_function=tr.hf_activation(cfg.activation),
      layer_norm_epsilon=cfg.layer_norm_epsilon,
      tie_word_embeddings=cfg.tie_output_embedding,
      initializer_range=cfg.init_std or 0.02, dtype='float32', **token_ids)
  tr.check_round_trip(cfg, lambda: model_config(hf)[0],
                      EXPORTED_ARCHITECTURE, tr.UNCHECKED + _IRRELEVANT)
  return hf


# Fields a decoder with learned positions never reads.
_IRRELEVANT = ('num_decoder_layers', 'share_embeddings', 'rope_base',
               'relative_attention_num_buckets',
               'relative_attention_max_distance')


# -------------------------------------------------------------- tensors --
_LN = r'(?P<norm>weight|bias)'
_LAYER = r'h\.(?P<i>\d+)\.'
_OUT = 'stack/layers_{i}'
RULES = (
    (r'wte\.weight', 'token_embedding/embedding', 'same'),
    (r'wpe\.weight', 'embed/positions/embedding', 'same'),
    (rf'{_LAYER}ln_1\.{_LN}', _OUT + '/attention_residual/norm/{norm}',
     'same'),
    (rf'{_LAYER}attn\.c_attn\.weight', _OUT + '/attention/{proj}/kernel',
     'split_qkv_to_heads'),
    (rf'{_LAYER}attn\.c_attn\.bias', _OUT + '/attention/{proj}/bias',
     'split_qkv_to_heads'),
    (rf'{_LAYER}attn\.c_proj\.weight', _OUT + '/attention/out/kernel',
     'from_heads'),
    (rf'{_LAYER}attn\.c_proj\.bias', _OUT + '/attention/out/bias', 'same'),
    (rf'{_LAYER}attn\.(bias|masked_bias)', None, None),  # causal-mask buffers
    (rf'{_LAYER}ln_2\.{_LN}', _OUT + '/ffn_residual/norm/{norm}', 'same'),
    (rf'{_LAYER}mlp\.c_fc\.(?P<p>weight|bias)', _OUT + '/ffn/wi/{p}',
     'same'),
    (rf'{_LAYER}mlp\.c_proj\.(?P<p>weight|bias)', _OUT + '/ffn/wo/{p}',
     'same'),
    (rf'ln_f\.{_LN}', 'final_norm/{norm}', 'same'),
    (r'lm_head\.weight', 'output_projection/kernel', 'untied_linear'),
)
LAYOUT = tr.Layout(RULES, {'norm': {'weight': 'scale', 'bias': 'bias'},
                           'p': {'weight': 'kernel', 'bias': 'bias'}},
                   strip='transformer.')


def import_params(state: dict, cfg: ModelConfig, name: str,
                  source: str) -> dict:
  return tr.import_params(state, LAYOUT, cfg, name, source)


def export_tensors(params, cfg: ModelConfig, name: str) -> dict:
  flat = tr.with_zero_biases(tr.flat_params(params), cfg, name)
  return tr.export_tensors(
      flat, LAYOUT, name,
      lambda hf_name, _: '' if hf_name.startswith('lm_head') else
      'transformer.')
