"""Export to the Hugging Face layout, checked through `transformers` itself.

One tiny run per architecture is trained a few steps by train.py's
`train_and_evaluate`, opened as the commands open a workdir and written by
export.py's `export_run`; `transformers.AutoModel*.from_pretrained` loads it
and must give our logits within 1e-4 and our greedy generations exactly,
and importing the export must give our parameters back.

  GPT-2   causal_lm without biases, exact GELU (nanoGPT's Shakespeare block)
  Llama   llama_small: RMSNorm, SwiGLU, grouped-query attention, rotary
  T5      t5_small:tiny (relative positions, v1.0's rescaled tied output)
  Marian  default.py's encoder-decoder (post-LN, sinusoidal positions)

BERT's trained runs (classification, QA) take the same path in
tests/test_use_workdir.py (logits within 1e-4); here its export is only
imported back. The decoder LMs have one layer and the encoder-decoders two
encoder layers and one decoder layer, which keeps the file's compilations
(most of its time) short.

transformers 5 has no translation pipeline any more (pipeline('translation')
says to use text-generation with a chat model), so the encoder-decoders are
checked through `generate`, which the pipeline called.
"""
import os

import jax
import numpy as np
import pytest
from flax import traverse_util

from configs import (bert_pretraining, causal_lm, default, llama_small,
                     multi30k_en_de, shakespeare_char, t5_small)
from models import hf as huggingface, registry
from models.config import ModelConfig
from models.encoder_decoder import shift_right
from decoding import generation
from training import loop, run_config, trained_run

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')
os.environ.setdefault('HF_HUB_OFFLINE', '1')

ATOL = 1e-4
TINY = dict(d_model=32, num_heads=4, d_ff=64, num_layers=1)
SEQ2SEQ = dict(TINY, num_layers=2, num_decoder_layers=1)


def tiny_run(tmp_path_factory, name, config, steps=3):
  """Trains `config` a few steps, exports it: (TrainedRun, export dir)."""
  config.num_train_steps = steps
  config.log_every = config.eval_every = config.checkpoint_every = steps
  config.batch_size = config.eval_batch_size = 8
  config.num_devices = 1
  config.optimizer.warmup_steps = 1
  workdir = str(tmp_path_factory.mktemp(name))
  loop.train_and_evaluate(config, workdir)
  run_config.save(config, workdir)
  config.decode.update(beam_size=1, alpha=0.0)  # predict: greedy
  run = trained_run.load(workdir, config)
  path = os.path.join(workdir, 'hf')
  trained_run.export_run(run, path)
  return run, path


def lm_config(config):
  config.data.max_length = 16
  config.decode.beam_size = 0
  return config


def seq2seq_config(config):
  config.data.num_eval_examples = 8
  config.decode.beam_size = 0  # no decoding in training's evaluation
  return config


@pytest.fixture(scope='module')
def gpt2(tmp_path_factory):
  config = lm_config(causal_lm.get_config())
  config.model.update(TINY, vocab_size=48, max_len=32, use_bias=False,
                      activation='gelu')
  return tiny_run(tmp_path_factory, 'gpt2', config)


@pytest.fixture(scope='module')
def llama(tmp_path_factory):
  config = lm_config(llama_small.get_config())
  config.model.update(TINY, num_kv_heads=2, vocab_size=48)
  return tiny_run(tmp_path_factory, 'llama', config)


@pytest.fixture(scope='module')
def t5(tmp_path_factory):
  config = seq2seq_config(t5_small.get_config('tiny'))
  config.model.update(SEQ2SEQ)
  return tiny_run(tmp_path_factory, 't5', config)


@pytest.fixture(scope='module')
def marian(tmp_path_factory):
  config = seq2seq_config(default.get_config())
  config.model.update(SEQ2SEQ, layer_norm_epsilon=1e-5)
  return tiny_run(tmp_path_factory, 'marian', config)


def flat(tree):
  return {k: np.asarray(v) for k, v in
          traverse_util.flatten_dict(tree, sep='/').items()}


def lm_batch(run):
  rows = np.random.RandomState(0).randint(4, run.task.model_config.vocab_size,
                                          (3, 12))
  return rows


def until_eos(ids, eos):
  ids = list(map(int, ids))
  return ids[:ids.index(eos) + 1] if eos in ids else ids


# ----------------------------------------------------------- decoder LMs --
@pytest.mark.parametrize('name,architecture', [
    ('gpt2', 'GPT2LMHeadModel'), ('llama', 'LlamaForCausalLM')])
def test_decoder_lm_logits_and_greedy_generation_match(request, name,
                                                       architecture):
  run, path = request.getfixturevalue(name)
  model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
  assert type(model).__name__ == architecture
  cfg = run.task.model_config
  ids = lm_batch(run)
  ours = registry.build('decoder_lm', cfg).apply({'params': run.params}, ids)
  with torch.no_grad():
    theirs = model(torch.tensor(ids)).logits.numpy()
  assert np.abs(np.asarray(ours) - theirs).max() < ATOL

  eos, bos, new = run.tokenizer.eos_id, run.task.bos_id, 10
  prompts = ids[:, :4]
  tokens = generation.generate(
      cfg, run.params, prompts, jax.random.key(0),
      max_decode_len=prompts.shape[1] + new, temperature=0.0,
      stop_ids=(eos,), bos_id=bos, pad_id=0)['tokens']
  with torch.no_grad():
    generated = model.generate(
        torch.tensor(np.concatenate([np.full((3, 1), bos), prompts], 1)),
        attention_mask=torch.ones(3, 5, dtype=torch.long),
        max_new_tokens=new, do_sample=False, pad_token_id=0).numpy()
  for row_ours, row_theirs in zip(np.asarray(tokens), generated):
    assert until_eos(row_ours[4:], eos) == until_eos(row_theirs[5:], eos)


# ------------------------------------------------------ encoder-decoders --
@pytest.mark.parametrize('name,architecture', [
    ('t5', 'T5ForConditionalGeneration'), ('marian', 'MarianMTModel')])
def test_seq2seq_logits_and_greedy_translation_match(request, name,
                                                     architecture):
  run, path = request.getfixturevalue(name)
  model = transformers.AutoModelForSeq2SeqLM.from_pretrained(path).eval()
  assert type(model).__name__ == architecture
  batch = next(iter(run.task.eval_batches(run.config.eval_batch_size)))
  inputs, targets = np.asarray(batch['inputs']), np.asarray(batch['targets'])
  mask = torch.tensor((inputs != 0).astype(np.int64))
  ours = registry.build('encoder_decoder', run.task.model_config).apply(
      {'params': run.params}, inputs, targets)
  with torch.no_grad():
    theirs = model(torch.tensor(inputs), attention_mask=mask,
                   decoder_input_ids=torch.tensor(
                       np.asarray(shift_right(targets)))).logits.numpy()
  assert np.abs(np.asarray(ours) - theirs).max() < ATOL

  eos = run.task.eos_id
  predicted = np.asarray(run.task.predict(run.params, batch))
  with torch.no_grad():
    generated = model.generate(
        torch.tensor(inputs), attention_mask=mask, do_sample=False,
        num_beams=1, max_new_tokens=predicted.shape[1]).numpy()
  for row_ours, row_theirs in zip(predicted, generated):
    assert until_eos(row_ours, eos) == until_eos(row_theirs[1:], eos)


# ----------------------------------------------------- import gives back --
@pytest.mark.parametrize('name', ['gpt2', 'llama', 't5', 'marian'])
def test_import_of_the_export_gives_the_parameters_back(request, name):
  run, path = request.getfixturevalue(name)
  cfg, params, model_name = huggingface.load_hf_checkpoint(path)
  assert model_name == run.task.model_name
  assert cfg.decoder_layers == run.task.model_config.decoder_layers
  ours, params = flat(run.params), flat(params)
  if not run.task.model_config.use_bias:  # GPT-2's zero biases come back
    assert not any(np.any(params.pop(p)) for p in set(params) - set(ours))
  assert params.keys() == ours.keys()
  for key, value in ours.items():
    np.testing.assert_allclose(params[key], value, rtol=0, atol=1e-7)


@pytest.mark.parametrize('model_name', ['bert_pretraining', 'bert_classifier',
                                        'bert_qa'])
def test_bert_export_imports_back(tmp_path, model_name):
  cfg = ModelConfig(**bert_pretraining.get_config().model).replace(**TINY)
  rs = np.random.RandomState(0)
  params = jax.tree.map(lambda s: rs.standard_normal(s.shape).astype(
      np.float32), registry.param_shapes(model_name, cfg))
  huggingface.export_hf_checkpoint(cfg, params, model_name, str(tmp_path),
                                   pad_token_id=0)
  back = huggingface.load_hf_checkpoint(str(tmp_path))
  assert back.model_name == model_name
  ours, theirs = flat(params), flat(back.params)
  assert ours.keys() == theirs.keys()
  for key, value in ours.items():
    np.testing.assert_array_equal(theirs[key], value)


# ----------------------------------------------------- configs and errors --
def test_shakespeare_char_without_biases_exports_as_gpt2():
  cfg = ModelConfig(**shakespeare_char.get_config('cpu').model)
  assert not cfg.use_bias
  hf = huggingface.hf_config(cfg, 'decoder_lm')
  assert hf['architectures'] == ['GPT2LMHeadModel']
  assert hf['activation_function'] == 'gelu'


@pytest.mark.parametrize('get_config', [default.get_config,
                                        multi30k_en_de.get_config])
def test_paper_models_export_as_marian_at_its_layer_norm_epsilon(get_config):
  cfg = ModelConfig(**get_config().model)
  with pytest.raises(huggingface.ExportError) as error:
    huggingface.hf_config(cfg, 'encoder_decoder')
  assert str(error.value) == (
      'model.layer_norm_epsilon=1e-06 cannot be exported: the Hugging Face '
      'MarianMTModel layout has layer_norm_epsilon=1e-05')
  hf = huggingface.hf_config(cfg.replace(layer_norm_epsilon=1e-5),
                             'encoder_decoder')
  assert hf['architectures'] == ['MarianMTModel'] and hf['scale_embedding']


@pytest.mark.parametrize('model,field,value,message', [
    ('marian', 'norm_position', 'pre', "model.norm_position='pre' cannot be "
     'exported: the Hugging Face MarianMTModel layout has '
     "norm_position='post'"),
    ('marian', 'share_embeddings', False, 'model.share_embeddings=False '
     'cannot'),
    ('marian', 'position_embedding', 'learned', "model.position_embedding="
     "'learned' cannot"),
    ('t5', 'tie_output_embedding', False, 'model.tie_output_embedding=False '
     'cannot be exported: transformers 5 T5ForConditionalGeneration ties '
     'lm_head'),
    ('llama', 'use_bias', True, 'model.use_bias=True cannot be exported: the '
     'Hugging Face LlamaForCausalLM layout has use_bias=False'),
    ('llama', 'position_embedding', 'learned', "model.position_embedding="
     "'learned' cannot"),
])
def test_what_a_layout_cannot_hold_fails_in_one_line(model, field, value,
                                                     message):
  base = {'marian': default.get_config().model,
          't5': t5_small.get_config('tiny').model,
          'llama': llama_small.get_config().model}[model]
  cfg = ModelConfig(**dict(base, **{field: value}))
  if model == 'marian':
    cfg = cfg.replace(layer_norm_epsilon=1e-5)
  with pytest.raises(huggingface.ExportError) as error:
    huggingface.hf_config(cfg, 'encoder_decoder' if model != 'llama'
                          else 'decoder_lm')
  assert str(error.value).startswith(message)
  assert '\n' not in str(error.value)
