"""BERT (Devlin et al. 2018): a bidirectional encoder and its task heads.

Built from the shared layers: `InputEmbedding` (tokens + learned positions +
token types, then LayerNorm) and post-LN `SelfAttentionLayer`s with GELU.
Every task model keeps the encoder under the name 'bert', so a pre-trained
encoder restores into any head (see
`training/pretrained.restore_hf_checkpoint`). The networks only make logits;
losses live in `tasks/`.

Inputs, as in Hugging Face transformers:
  input_ids:      int [b, l] WordPiece ids, [CLS] first.
  token_type_ids: int [b, l] segment A (0) / B (1); None: all 0.
  attention_mask: [b, l] 1 for real tokens, 0 for padding; None: all real.
    Only keys are masked, as in the reference: padded positions still get
    (meaningless) outputs, and nothing attends to them.
"""
import jax.numpy as jnp
import flax.linen as nn

from models import initializers
from models.config import ModelConfig
from models.dense import Dense
from models.dropout import dropout_for
from models.embeddings import InputEmbedding, TokenEmbedding
from models.feed_forward import ACTIVATIONS
from models.normalization import layer_norm
from models.token_mask import TokenMask
from models.transformer_layers import SelfAttentionLayer, LayerStack


def _dense(cfg: ModelConfig, features: int, name: str | None) -> Dense:
  """A head's d_model -> features layer (its output dimension is small or
  d_model again, so only the input is named)."""
  return Dense(features, dtype=cfg.compute_dtype,
               param_dtype=cfg.params_dtype,
               kernel_init=initializers.kernel(cfg, ('embed', None)),
               bias_init=initializers.zeros(None), name=name,
               fast_dots=cfg.fast_paths.dense_dots)


class Bert(nn.Module):
  """The encoder: ids -> hidden states [b, l, d] and pooled [CLS] [b, d].

  Returns dict(hidden=[b, l, d_model], pooled=[b, d_model] or None). The
  pooler is tanh(W h_[CLS] + b); task models without it (masked LM, token
  classification, QA) set `add_pooler=False`, as Hugging Face does.
  """
  config: ModelConfig
  deterministic: bool = True
  add_pooler: bool = True

  def setup(self):
    cfg = self.config
    self.token_embedding = TokenEmbedding(cfg)
    self.embed = InputEmbedding(cfg, self.token_embedding, self.deterministic)
    self.stack = LayerStack(cfg, SelfAttentionLayer, cfg.num_layers,
                            self.deterministic)
    if self.add_pooler:
      self.pooler = _dense(cfg, cfg.d_model, None)

  def __call__(self, input_ids, token_type_ids=None, attention_mask=None,
               positions=None):
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(input_ids.shape[1]),
                                   input_ids.shape)
    mask = TokenMask(key_valid=None if attention_mask is None
                     else attention_mask.astype(bool))
    x = self.embed(input_ids, positions, token_types=token_type_ids)
    x = self.stack(x, mask, positions)
    pooled = jnp.tanh(self.pooler(x[:, 0])) if self.add_pooler else None
    return dict(hidden=x, pooled=pooled)

  def attend(self, x):
    """[b, m, d] -> [b, m, vocab] with the (tied) word embedding table."""
    return self.token_embedding.attend(x)


class MaskedLMHead(nn.Module):
  """act(dense(h)) -> LayerNorm -> tied word embeddings + output bias."""
  config: ModelConfig

  @nn.compact
  def __call__(self, hidden, attend):
    cfg = self.config
    h = ACTIVATIONS[cfg.activation](_dense(cfg, cfg.d_model, 'transform')(hidden))
    h = layer_norm(cfg, 'norm')(h)
    bias = self.param('bias', initializers.zeros('vocab'), (cfg.vocab_size,),
                      cfg.params_dtype)
    return (attend(h) + bias).astype(jnp.float32)


def gather_positions(hidden, positions):
  """hidden [b, l, d], positions int [b, m] -> [b, m, d]."""
  return jnp.take_along_axis(hidden, positions[..., None], axis=1)


class BertForPreTraining(nn.Module):
  """Masked LM + next-sentence prediction (the paper's pre-training).

  masked_positions: optional int [b, m]; the LM head then runs only there
  (max_predictions_per_seq in the reference), giving mlm_logits [b, m, V]
  instead of [b, l, V]. Returns dict(mlm_logits, nsp_logits=[b, 2]).
  """
  config: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, input_ids, token_type_ids=None, attention_mask=None,
               masked_positions=None):
    cfg = self.config
    bert = Bert(cfg, self.deterministic, name='bert')
    out = bert(input_ids, token_type_ids, attention_mask)
    hidden = out['hidden']
    if masked_positions is not None:
      hidden = gather_positions(hidden, masked_positions)
    mlm_logits = MaskedLMHead(cfg, name='mlm_head')(hidden, bert.attend)
    nsp_logits = _dense(cfg, 2, 'nsp_head')(out['pooled'])
    return dict(mlm_logits=mlm_logits,
                nsp_logits=nsp_logits.astype(jnp.float32))


class BertForMaskedLM(nn.Module):
  """Masked LM only (no pooler): logits [b, l, V] or [b, m, V]."""
  config: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, input_ids, token_type_ids=None, attention_mask=None,
               masked_positions=None):
    bert = Bert(self.config, self.deterministic, add_pooler=False,
                name='bert')
    hidden = bert(input_ids, token_type_ids, attention_mask)['hidden']
    if masked_positions is not None:
      hidden = gather_positions(hidden, masked_positions)
    return MaskedLMHead(self.config, name='mlm_head')(hidden, bert.attend)


def _classifier(cfg: ModelConfig, x, deterministic: bool):
  """Dropout, then the 'classifier' layer to num_labels float32 logits (the
  sentence and the token classifiers share it; call inside nn.compact)."""
  x = dropout_for(cfg, cfg.dropout_rate)(x, deterministic)
  return _dense(cfg, cfg.num_labels, 'classifier')(x).astype(jnp.float32)


class BertForSequenceClassification(nn.Module):
  """Pooled [CLS] -> dropout -> [b, num_labels] (num_labels=1: regression)."""
  config: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, input_ids, token_type_ids=None, attention_mask=None):
    cfg = self.config
    pooled = Bert(cfg, self.deterministic, name='bert')(
        input_ids, token_type_ids, attention_mask)['pooled']
    return _classifier(cfg, pooled, self.deterministic)


class BertForTokenClassification(nn.Module):
  """Every position -> dropout -> [b, l, num_labels] (tagging, NER)."""
  config: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, input_ids, token_type_ids=None, attention_mask=None):
    cfg = self.config
    hidden = Bert(cfg, self.deterministic, add_pooler=False, name='bert')(
        input_ids, token_type_ids, attention_mask)['hidden']
    return _classifier(cfg, hidden, self.deterministic)


class BertForQuestionAnswering(nn.Module):
  """Extractive QA: dict(start_logits=[b, l], end_logits=[b, l])."""
  config: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, input_ids, token_type_ids=None, attention_mask=None):
    cfg = self.config
    hidden = Bert(cfg, self.deterministic, add_pooler=False, name='bert')(
        input_ids, token_type_ids, attention_mask)['hidden']
    logits = _dense(cfg, 2, 'qa_outputs')(hidden).astype(jnp.float32)
    return dict(start_logits=logits[..., 0], end_logits=logits[..., 1])
