"""BERT (`model_type` 'bert') <-> the registry's BERT models.

    BertModel                      <-> 'bert'  (encoder + pooler)
    BertForPreTraining             <-> 'bert_pretraining'
    BertForMaskedLM                <-> 'bert_mlm'
    BertForSequenceClassification  <-> 'bert_classifier'
    BertForTokenClassification     <-> 'bert_token_classifier'
    BertForQuestionAnswering       <-> 'bert_qa'

Task models keep the encoder under the `bert.` prefix (ours: 'bert/');
old checkpoints with gamma/beta LayerNorms and the prefix on a plain
BertModel load too.
"""
from errors import UserError
from models.config import ModelConfig
from models.hf import tensor_rules as tr

MODEL_TYPE = 'bert'
ARCHITECTURES = {
    'BertModel': 'bert',
    'BertForPreTraining': 'bert_pretraining',
    'BertForMaskedLM': 'bert_mlm',
    'BertForSequenceClassification': 'bert_classifier',
    'BertForTokenClassification': 'bert_token_classifier',
    'BertForQuestionAnswering': 'bert_qa',
}
BASE_MODEL = 'bert'  # what an unknown Bert* architecture is tried as
_EXPORTED = {name: arch for arch, name in ARCHITECTURES.items()}


# --------------------------------------------------------------- config --
def model_config(hf: dict, state=None, **overrides) -> tuple[ModelConfig,
                                                              str]:
  """config.json -> (ModelConfig, registry name); overrides: fields that
  keep the shapes (dtype, scan_layers, dropout ...)."""
  del state
  if hf.get('position_embedding_type', 'absolute') != 'absolute':
    raise UserError('BERT position_embedding_type='
                    f'{hf["position_embedding_type"]!r} is not supported '
                    '(absolute only)')
  labels = hf.get('id2label')
  fields = dict(
      vocab_size=hf['vocab_size'], d_model=hf['hidden_size'],
      num_heads=hf['num_attention_heads'], d_ff=hf['intermediate_size'],
      num_layers=hf['num_hidden_layers'],
      dropout_rate=hf.get('hidden_dropout_prob', 0.1),
      attention_dropout_rate=hf.get('attention_probs_dropout_prob', 0.1),
      activation=tr.activation(hf.get('hidden_act', 'gelu')),
      norm_position='post', final_layer_norm=False,
      embedding_layer_norm=True,
      layer_norm_epsilon=hf.get('layer_norm_eps', 1e-12),
      position_embedding='learned',
      max_len=hf.get('max_position_embeddings', 512),
      type_vocab_size=hf.get('type_vocab_size', 2),
      num_labels=len(labels) if labels else hf.get('num_labels', 2),
      tie_output_embedding=True, scale_embedding=False,
      init_std=hf.get('initializer_range', 0.02))
  fields.update(overrides)
  return ModelConfig(**fields), model_name(hf)


def model_name(hf: dict) -> str:
  return ARCHITECTURES.get((hf.get('architectures') or [None])[0],
                           BASE_MODEL)


def exports(cfg: ModelConfig, name: str) -> bool:
  del cfg
  return name in _EXPORTED


def hf_config(cfg: ModelConfig, name: str, **token_ids) -> dict:
  """The config.json of `cfg`; ExportError names a field it cannot hold."""
  arch = _EXPORTED[name]
  if not cfg.type_vocab_size:
    raise tr.ExportError('model.type_vocab_size=0: Hugging Face BERT needs '
                         'token-type embeddings (>= 1)')
  hf = dict(
      model_type=MODEL_TYPE, architectures=[arch], vocab_size=cfg.vocab_size,
      hidden_size=cfg.d_model, num_attention_heads=cfg.num_heads,
      intermediate_size=cfg.d_ff, num_hidden_layers=cfg.num_layers,
      hidden_dropout_prob=cfg.dropout_rate,
      attention_probs_dropout_prob=cfg.attention_dropout_rate,
      hidden_act=tr.hf_activation(cfg.activation),
      layer_norm_eps=cfg.layer_norm_epsilon,
      max_position_embeddings=cfg.max_len,
      type_vocab_size=cfg.type_vocab_size,
      position_embedding_type='absolute',
      initializer_range=cfg.init_std or 0.02, dtype='float32', **token_ids)
  if name in ('bert_classifier', 'bert_token_classifier'):
    hf['id2label'] = {str(i): f'LABEL_{i}' for i in range(cfg.num_labels)}
    hf['label2id'] = {f'LABEL_{i}': i for i in range(cfg.num_labels)}
  tr.check_round_trip(cfg, lambda: model_config(hf)[0], arch,
                      tr.UNCHECKED + _IRRELEVANT)
  return hf


# Fields an encoder with learned positions never reads.
_IRRELEVANT = ('num_decoder_layers', 'share_embeddings', 'rope_base',
               'relative_attention_num_buckets',
               'relative_attention_max_distance')


# -------------------------------------------------------------- tensors --
_LN = r'(?P<norm>weight|bias|gamma|beta)'
_LAYER = r'encoder\.layer\.(?P<i>\d+)\.'
_OUT = '{b}stack/layers_{i}'
RULES = (
    (r'embeddings\.word_embeddings\.weight', '{b}token_embedding/embedding',
     'same'),
    (r'embeddings\.position_embeddings\.weight',
     '{b}embed/positions/embedding', 'same'),
    (r'embeddings\.token_type_embeddings\.weight',
     '{b}embed/token_types/embedding', 'same'),
    (r'embeddings\.position_ids', None, None),
    (rf'embeddings\.LayerNorm\.{_LN}', '{b}embed/norm/{norm}', 'same'),
    (rf'{_LAYER}attention\.self\.(?P<proj>query|key|value)\.weight',
     _OUT + '/attention/{proj}/kernel', 'linear_to_heads'),
    (rf'{_LAYER}attention\.self\.(?P<proj>query|key|value)\.bias',
     _OUT + '/attention/{proj}/bias', 'to_heads'),
    (rf'{_LAYER}attention\.output\.dense\.weight',
     _OUT + '/attention/out/kernel', 'linear_from_heads'),
    (rf'{_LAYER}attention\.output\.dense\.bias',
     _OUT + '/attention/out/bias', 'same'),
    (rf'{_LAYER}attention\.output\.LayerNorm\.{_LN}',
     _OUT + '/attention_residual/norm/{norm}', 'same'),
    (rf'{_LAYER}intermediate\.dense\.weight', _OUT + '/ffn/wi/kernel',
     'linear'),
    (rf'{_LAYER}intermediate\.dense\.bias', _OUT + '/ffn/wi/bias', 'same'),
    (rf'{_LAYER}output\.dense\.weight', _OUT + '/ffn/wo/kernel', 'linear'),
    (rf'{_LAYER}output\.dense\.bias', _OUT + '/ffn/wo/bias', 'same'),
    (rf'{_LAYER}output\.LayerNorm\.{_LN}',
     _OUT + '/ffn_residual/norm/{norm}', 'same'),
    (r'pooler\.dense\.weight', '{b}pooler/kernel', 'linear'),
    (r'pooler\.dense\.bias', '{b}pooler/bias', 'same'),
    # Task heads (never under the `bert.` prefix).
    (r'cls\.predictions\.transform\.dense\.weight',
     'mlm_head/transform/kernel', 'linear'),
    (r'cls\.predictions\.transform\.dense\.bias', 'mlm_head/transform/bias',
     'same'),
    (rf'cls\.predictions\.transform\.LayerNorm\.{_LN}',
     'mlm_head/norm/{norm}', 'same'),
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
_NORM = {'norm': {'weight': 'scale', 'gamma': 'scale', 'bias': 'bias',
                  'beta': 'bias'}}


def layout(name: str) -> tr.Layout:
  return tr.Layout(RULES, _NORM, b='' if name == 'bert' else 'bert/',
                   strip='bert.')


def import_params(state: dict, cfg: ModelConfig, name: str,
                  source: str) -> dict:
  return tr.import_params(state, layout(name), cfg, name, source)


def export_tensors(params, cfg: ModelConfig, name: str) -> dict:
  """Our params -> {Hugging Face name: float32 array}."""
  def prefix(hf_name, on_backbone):  # task models: the encoder under bert.
    del hf_name
    return 'bert.' if on_backbone and name != 'bert' else ''
  flat = tr.with_zero_biases(tr.flat_params(params), cfg, name)
  return tr.export_tensors(flat, layout(name), name, prefix)
