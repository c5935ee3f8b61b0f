"""The attention figures of docs/transformers.md, drawn from the project's
own modules (docs/make_figures.py writes them all).

The attention weights are not exposed by the model, and models/ stays
untouched: flax `capture_intermediates` records the outputs of the
cross-attention `query` and `key` projections, and the weights are
recomputed from them as softmax(Q K^T / sqrt(d_k)) with the padding mask.
"""
import contextlib
import io
import tempfile

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np

from configs import default
from configs.base_config import base_config, data_config
from input_data import synthetic
from models import attention
from models.attention import MultiHeadAttention
from models.config import ModelConfig, model_config_from
from models.encoder_decoder import EncoderDecoder
from training import loop, run_config, trained_run


# --------------------------------------------------- attention, pictured --
def _matrix(ax, values, title, cmap='RdBu', vmin=None, vmax=None,
            xlabel=None, ylabel=None):
  """One array as a heatmap, its shape in the title, no tick labels."""
  values = np.asarray(values)
  if vmin is None:
    vmax = float(np.abs(values).max())
    vmin = -vmax
  ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
  ax.set_title(f'{title}\n{list(values.shape)}', fontsize=11)
  ax.set_xticks([])
  ax.set_yticks([])
  if xlabel:
    ax.set_xlabel(xlabel, fontsize=9)
  if ylabel:
    ax.set_ylabel(ylabel, fontsize=9)


def _operator(ax, text):
  ax.axis('off')
  ax.text(0.5, 0.5, text, fontsize=13, ha='center', va='center')


def attention_steps(path):
  """softmax(Q K^T / sqrt(d_k)) V for 4 queries and 6 keys of width 8,
  each array drawn with its shape; the output is checked against
  models.attention.dot_product_attention."""
  rng = np.random.default_rng(0)
  q_len, k_len, d_k = 4, 6, 8
  q, k, v = (rng.normal(size=(n, d_k)).astype(np.float32)
             for n in (q_len, k_len, k_len))
  q *= 2  # sharper weights than unit vectors give, easier to see
  scores = q @ k.T / np.sqrt(d_k)
  weights = np.asarray(jax.nn.softmax(scores, axis=-1))
  out = weights @ v
  ours = attention.dot_product_attention(
      *(jnp.asarray(a)[None, :, None] for a in (q, k, v)), None,
      dropout_rate=0.0, dropout_rng=None, deterministic=True, impl='einsum',
      dtype=jnp.float32)[0, :, 0]
  np.testing.assert_allclose(out, ours, atol=1e-5)
  fig = plt.figure(figsize=(16, 7.5))
  grid = fig.add_gridspec(2, 7, width_ratios=(8, 2.2, 6, 2.4, 6, 3.2, 6),
                          height_ratios=(1.25, 1), hspace=0.45, wspace=0.3)
  _matrix(fig.add_subplot(grid[0, 0]), q, 'Q (queries)', xlabel='d_k',
          ylabel='query position')
  _operator(fig.add_subplot(grid[0, 1]), '×')
  _matrix(fig.add_subplot(grid[0, 2]), k.T, 'K^T (keys, transposed)',
          xlabel='key position', ylabel='d_k')
  _operator(fig.add_subplot(grid[0, 3]), '/ √d_k\n=')
  _matrix(fig.add_subplot(grid[0, 4]), scores, 'scores',
          xlabel='key position', ylabel='query position')
  _operator(fig.add_subplot(grid[0, 5]), 'softmax\nover each\nrow →')
  ax = fig.add_subplot(grid[0, 6])
  _matrix(ax, weights, 'weights (rows sum to 1)', cmap='viridis', vmin=0,
          vmax=1, xlabel='key position', ylabel='query position')
  for (i, j), w in np.ndenumerate(weights):
    ax.text(j, i, f'{w:.2f}', ha='center', va='center', fontsize=8,
            color='white' if w < 0.6 else 'black')
  ax = fig.add_subplot(grid[1, 2])
  _matrix(ax, weights, 'weights', cmap='viridis', vmin=0, vmax=1,
          xlabel='key position', ylabel='query position')
  _operator(fig.add_subplot(grid[1, 3]), '×')
  _matrix(fig.add_subplot(grid[1, 4]), v, 'V (values)', xlabel='d_v',
          ylabel='key position')
  _operator(fig.add_subplot(grid[1, 5]), '=')
  _matrix(fig.add_subplot(grid[1, 6]), out, 'output: one weighted mean\n'
          'of the values per query', xlabel='d_v', ylabel='query position')
  fig.savefig(path, dpi=100, bbox_inches='tight')
  plt.close(fig)


def multi_head(path):
  """MultiHeadAttention (models/attention.py) taken apart: its query, key
  and value kernels [d_model, h, d_k] give h heads of width d_k, each head
  attends on its own, the h outputs are concatenated and W^O maps them
  back to d_model. Checked against the module's own output."""
  cfg = ModelConfig(vocab_size=8, d_model=16, num_heads=4, d_ff=32,
                    num_layers=1, dropout_rate=0.0, max_len=8)
  mha = MultiHeadAttention(cfg)
  x = jax.random.normal(jax.random.key(1), (1, 6, cfg.d_model))
  p = nn.meta.unbox(mha.init(jax.random.key(0), x, x))['params']
  project = lambda name: (jnp.einsum('ld,dhk->lhk', x[0], p[name]['kernel'])
                          + p[name]['bias'])
  q, k, v = project('query'), project('key'), project('value')  # [l, h, d_k]
  weights = jax.nn.softmax(
      jnp.einsum('qhd,khd->hqk', q, k) / np.sqrt(cfg.head_dim), axis=-1)
  heads = jnp.einsum('hqk,khd->qhd', weights, v)                # [l, h, d_k]
  concat = heads.reshape(6, -1)                                 # [l, h * d_k]
  w_o = p['out']['kernel'].reshape(-1, cfg.d_model)             # [h*d_k, d]
  out = concat @ w_o + p['out']['bias']
  np.testing.assert_allclose(out, mha.apply({'params': p}, x, x)[0],
                             atol=1e-5)
  h = cfg.num_heads
  fig = plt.figure(figsize=(15, 7.2))
  grid = fig.add_gridspec(2, 2 * h, height_ratios=(1, 1.1), hspace=0.35)
  _matrix(fig.add_subplot(grid[0, 0:2]), x[0], 'input x',
          xlabel='d_model', ylabel='position')
  _matrix(fig.add_subplot(grid[0, 2:4]), q.reshape(6, -1),
          'x W^Q, split into h heads', xlabel=f'h x d_k = {h} x '
          f'{cfg.head_dim}', ylabel='position')
  _matrix(fig.add_subplot(grid[0, 4:6]), concat,
          'head outputs, concatenated', xlabel='h x d_k', ylabel='position')
  _matrix(fig.add_subplot(grid[0, 6:8]), out, 'concat W^O',
          xlabel='d_model', ylabel='position')
  for ax in fig.axes[1:3]:
    for boundary in range(1, h):
      ax.axvline(boundary * cfg.head_dim - 0.5, color='k', lw=1.5)
  for i in range(h):
    _matrix(fig.add_subplot(grid[1, 2 * i:2 * i + 2]), weights[i],
            f'head {i + 1}: its attention weights',
            cmap='viridis', vmin=0, vmax=1, xlabel='key position',
            ylabel='query position' if i == 0 else None)
  fig.suptitle(f'Multi-head self-attention, d_model = {cfg.d_model}, '
               f'h = {h} heads of d_k = {cfg.head_dim} (random weights)',
               fontsize=13)
  fig.savefig(path, dpi=100, bbox_inches='tight')
  plt.close(fig)


def masks(path):
  """The padding, causal and packed-segment masks of models/attention.py,
  and causal AND segments, as the decoder-only LM combines them."""
  tokens = jnp.array([[5, 7, 9, 4, 0, 0]])     # four tokens, two pads
  segments = jnp.array([[1, 1, 1, 2, 2, 2]])   # two examples in one row
  panels = (
      ('padding\n(tokens 5 7 9 4, then 2 pads)',
       attention.padding_mask(tokens, tokens)),
      ('causal', attention.causal_mask(6)),
      ('packed segments\n(ids 1 1 1 2 2 2)',
       attention.segment_mask(segments, segments)),
      ('causal AND segments\n(a packed decoder row)',
       attention.combine_masks(attention.causal_mask(6),
                               attention.segment_mask(segments, segments))),
  )
  fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.9))
  for ax, (title, mask) in zip(axes, panels):
    ax.imshow(np.asarray(mask[0, 0], np.float32), cmap='Greys_r', vmin=0,
              vmax=1)
    ax.set_title(title, fontsize=11)
    ax.set_xticks(range(6))
    ax.set_yticks(range(6))
    ax.set_xlabel('key position j', fontsize=10)
  axes[0].set_ylabel('query position i', fontsize=10)
  fig.suptitle('white: query i may attend to key j; black: masked',
               fontsize=12)
  fig.tight_layout()
  fig.savefig(path, dpi=100, bbox_inches='tight')
  plt.close(fig)


# ------------------------------------------------------- cross-attention --
def reversal_config(steps: int):
  """The default experiment, shortened to `steps` steps on one device; at
  400 steps, the settings of the guide's section 6.3 (the tests check)."""
  config = default.get_config()
  config.num_train_steps = steps
  config.num_devices = 1
  config.optimizer.warmup_steps = min(config.optimizer.warmup_steps,
                                      max(steps // 2, 1))
  config.log_every = max(steps // 4, 1)
  config.eval_every = config.checkpoint_every = steps
  config.data.num_eval_examples = 64
  config.decode.beam_size = 0  # eval: loss and token accuracy, no decoding
  return config


def train_reversal(steps: int, workdir: str):
  config = reversal_config(steps)
  with contextlib.redirect_stdout(io.StringIO()):
    result = loop.train_and_evaluate(config, workdir)
  return config, result


def cross_attention_weights(model_cfg, params, inputs, targets):
  """Per layer: cross-attention weights [b, heads, t, s], recomputed from
  the captured `query`/`key` projections (captured before any rotary
  rotation; cross-attention uses none)."""
  model = EncoderDecoder(model_cfg)
  is_projection = lambda mdl, _: (
      mdl.name in ('query', 'key') and 'cross_attention' in mdl.path)
  _, state = model.apply({'params': params}, inputs, targets,
                         capture_intermediates=is_projection,
                         mutable=['intermediates'])
  layers = state['intermediates']['decoder']['stack']
  mask = (inputs != 0)[:, None, None, :]
  weights = []
  for i in range(model_cfg.decoder_layers):
    cross = layers[f'layers_{i}']['cross_attention']
    q, k = cross['query']['__call__'][0], cross['key']['__call__'][0]
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(q.shape[-1])
    logits = jnp.where(mask, logits, -1e9)
    weights.append(np.asarray(jax.nn.softmax(logits, axis=-1)))
  return weights


def cross_attention(path, steps: int = 400, trained=None):
  """`trained`: (config, loop.TrainResult) of a reversal run to draw
  instead of training one for `steps` steps (the tests pass the guide's)."""
  if trained is None:
    with tempfile.TemporaryDirectory() as workdir:
      trained = train_reversal(steps, workdir)
  config, result = trained
  model_cfg = model_config_from(config.model)
  rng = np.random.default_rng(7)
  data = data_config(task='reverse', min_len=10, max_len=10)
  rows = synthetic.seq2seq_rows(rng, 1, data, model_cfg.vocab_size)
  inputs, targets = rows['inputs'], rows['targets']
  weights = cross_attention_weights(model_cfg, result.state.params,
                                    jnp.asarray(inputs), jnp.asarray(targets))
  heads = model_cfg.num_heads
  fig, axes = plt.subplots(len(weights), heads,
                           figsize=(3.3 * heads, 3.9 * len(weights)),
                           squeeze=False, layout='constrained')
  src = [str(t) for t in inputs[0]]
  tgt = [str(t) for t in targets[0][:-1]] + ['EOS']
  for layer, w in enumerate(weights):
    for h in range(heads):
      ax = axes[layer, h]
      im = ax.imshow(w[0, h], cmap='viridis', vmin=0, vmax=1)
      ax.set_title(f'layer {layer + 1}, head {h + 1}', fontsize=11)
      ax.set_xticks(range(len(src)), src, fontsize=9)
      ax.set_yticks(range(len(tgt)), tgt, fontsize=9)
      if h == 0:
        ax.set_ylabel('target position (query),\nlabelled with its token',
                      fontsize=10)
      if layer == len(weights) - 1:
        ax.set_xlabel('source position (key),\nlabelled with its token',
                      fontsize=10)
  fig.colorbar(im, ax=axes, shrink=0.8, label='attention weight')
  fig.suptitle(f'Cross-attention after {int(result.state.step)} training '
               'steps on sequence reversal (held-out token accuracy '
               f'{float(result.eval_metrics["eval/accuracy"]):.2f})',
               fontsize=13)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return weights


# ------------------------------------- cross-attention, a real translation --
# The first of the six test captions quoted in section 8.1 of the guide
# (line 1 of test_2016_flickr.{en,de}), in the run's source language.
FIRST_CAPTION = {'en': 'A man in an orange hat starring at something.',
                 'de': 'Ein Mann mit einem orangefarbenen Hut, der etwas '
                       'anstarrt.'}


def multi30k_cross_attention(path, workdir: str, average_last: int):
  """Cross-attention of a trained Multi30k run (configs/multi30k_en_de.py or
  multi30k_de_en.py, its workdir) on the first quoted caption: the run's
  own beam search translates it, and the weights of each decoder layer,
  averaged over the heads, are drawn source piece by target piece."""
  config = run_config.load_or(workdir, base_config())
  source_language = config.data.inputs_pattern.split('.')[-2]
  # A run evaluated without decoding still translates here (predict.py too).
  config.decode.beam_size = max(config.decode.beam_size, 1)
  run = trained_run.load(workdir, config, average_last=average_last)
  tokenizer, text = run.tokenizer, FIRST_CAPTION[source_language]
  ids, spans = tokenizer.encode_with_offsets(text)
  inputs = np.zeros((1, config.data.max_input_length), np.int32)
  inputs[0, :len(ids) + 1] = ids + [tokenizer.eos_id]
  targets = np.asarray(run.task.predict(run.params, {'inputs': inputs}))
  eos = np.flatnonzero(targets[0] == tokenizer.eos_id)
  targets = targets[:, :eos[0] + 1 if eos.size else targets.shape[1]]
  model_cfg = model_config_from(config.model)
  weights = cross_attention_weights(model_cfg, run.params,
                                    jnp.asarray(inputs), jnp.asarray(targets))
  src = [text[a:b] for a, b in spans] + ['EOS']
  tgt = ['EOS' if i == tokenizer.eos_id else tokenizer.decode([int(i)])
         for i in targets[0]]
  layers = len(weights)
  fig, axes = plt.subplots(1, layers, figsize=(4.2 * layers, 5.2),
                           squeeze=False, layout='constrained')
  for layer, w in enumerate(weights):
    ax = axes[0, layer]
    im = ax.imshow(w[0].mean(0)[:, :len(src)], cmap='viridis', vmin=0,
                   vmax=1)
    ax.set_title(f'layer {layer + 1}, mean of {model_cfg.num_heads} heads',
                 fontsize=11)
    ax.set_xticks(range(len(src)), src, rotation=90, fontsize=9)
    ax.set_yticks(range(len(tgt)), tgt, fontsize=9)
    ax.set_xlabel('source piece (key)', fontsize=10)
  axes[0, 0].set_ylabel('target piece written (query)', fontsize=10)
  fig.colorbar(im, ax=axes, shrink=0.8, label='attention weight')
  fig.suptitle(f'"{text}" -> "{tokenizer.decode(targets[0])}" (beam '
               f'{config.decode.beam_size}, mean of the last {average_last} '
               'checkpoints)', fontsize=12)
  fig.savefig(path, dpi=100)
  plt.close(fig)
