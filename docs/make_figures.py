r"""Makes every figure of docs/transformers.md.

  python docs/make_figures.py --out=docs/figures            # ~1 min, 2 cores
  python docs/make_figures.py --out=/tmp/figs --steps=20    # smoke test
  python docs/make_figures.py --only multi30k_cross_attention.png \
      --multi30k_workdir=workdirs/m30k_en_de                # a trained run

Figures:
  architecture.png         the encoder-decoder, drawn with matplotlib patches
  attention_steps.png      Q K^T -> softmax -> V with the arrays' shapes,
                           checked against models.attention
  multi_head.png           MultiHeadAttention split into heads and
                           concatenated, checked against the module
  masks.png                padding, causal and packed-segment masks of
                           models/attention.py
  sinusoidal_positions.png PE[pos, j] of Vaswani et al. 2017, section 3.5
  learning_rate.png        training.optimizers.learning_rate_schedule, paper's
                           settings (d_model 512, 4000 warmup steps)
  cross_attention.png      decoder-encoder attention of the default
                           experiment (configs/default.py, reversal),
                           trained here for --steps steps
  multi30k_cross_attention.png
                           decoder-encoder attention of a trained Multi30k
                           run on the first test caption; only with
                           --multi30k_workdir or $MULTI30K_WORKDIR (skipped,
                           with a message, without one)

The attention weights are not exposed by the model, and models/ stays
untouched: flax `capture_intermediates` records the outputs of the
cross-attention `query` and `key` projections, and the weights are
recomputed from them as softmax(Q K^T / sqrt(d_k)) with the padding mask.
"""
import argparse
import contextlib
import io
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import matplotlib  # pylint: disable=g-import-not-at-top
matplotlib.use('Agg')
from matplotlib import patches
import matplotlib.pyplot as plt
import jax
import jax.numpy as jnp
import flax.linen as nn
import ml_collections
import numpy as np

from configs import default
from configs.base_config import base_config, data_config
from input_data import synthetic
from models import attention
from models.attention import MultiHeadAttention
from models.config import ModelConfig, model_config_from
from models.embeddings import sinusoidal_positions
from models.encoder_decoder import EncoderDecoder
from training import optimizers, run_config
from training import loop
from training import trained_run


# ----------------------------------------------------------- architecture --
_FONT = 13  # box labels; the figure is drawn at 11.5 x 13 inches


def _box(ax, x, y, w, h, text, color, fontsize=_FONT):
  ax.add_patch(patches.FancyBboxPatch(
      (x, y), w, h, boxstyle='round,pad=0.02,rounding_size=0.08',
      linewidth=1.2, edgecolor='0.25', facecolor=color))
  ax.text(x + w / 2, y + h / 2, text, ha='center', va='center',
          fontsize=fontsize)


def _arrow(ax, start, end, color='0.2', **kwargs):
  ax.add_patch(patches.FancyArrowPatch(
      start, end, arrowstyle='-|>', mutation_scale=16, linewidth=1.4,
      color=color, **kwargs))


def _residual(ax, x, w, y0, y1, side):
  """The residual path: from a sub-layer's input around it to Add & Norm."""
  edge = x if side < 0 else x + w
  out = edge + 0.22 * side
  ax.plot([x + w / 2, out, out], [y0, y0, y1], color='0.45', lw=1.3)
  _arrow(ax, (out, y1), (edge, y1), color='0.45')


def architecture(path):
  """Encoder (left) and decoder (right) stacks, post-LN as in the paper."""
  fig, ax = plt.subplots(figsize=(11.5, 13.0))
  ax.set_xlim(-0.6, 11.9)
  ax.set_ylim(0, 13.6)
  ax.axis('off')
  attn, ffn, norm, emb = '#fbd6a4', '#a8d8ea', '#f3f3b5', '#f4c2c2'
  w = 3.8
  ex, dx = 0.5, 7.2  # left edges of the encoder and decoder columns
  mid = lambda x: x + w / 2
  _box(ax, ex, 0.2, w, 0.7, 'Source tokens', 'white')
  _box(ax, ex, 1.3, w, 0.9, 'Token embedding\n+ positional encoding', emb)
  ax.add_patch(patches.FancyBboxPatch(
      (ex - 0.35, 2.6), w + 0.7, 4.2, boxstyle='round,pad=0.05',
      linewidth=1.4, edgecolor='0.4', facecolor='0.95', linestyle='--'))
  ax.text(ex - 0.45, 4.7, 'N x', ha='right', va='center', fontsize=16)
  _box(ax, ex, 2.9, w, 1.0, 'Multi-head\nself-attention', attn)
  _box(ax, ex, 4.1, w, 0.55, 'Add & LayerNorm', norm)
  _box(ax, ex, 5.0, w, 1.0, 'Position-wise\nfeed-forward', ffn)
  _box(ax, ex, 6.15, w, 0.55, 'Add & LayerNorm', norm)
  for y0, y1 in ((0.9, 1.3), (2.2, 2.9), (3.9, 4.1), (4.65, 5.0), (6.0, 6.15),
                 (6.7, 7.7)):
    _arrow(ax, (mid(ex), y0), (mid(ex), y1))
  for y0, y1 in ((2.5, 4.375), (4.85, 6.425)):
    _residual(ax, ex, w, y0, y1, side=-1)
  _box(ax, ex, 7.7, w, 1.2, 'Encoder output:\none vector per source\n'
       'position [b, s, d_model]', 'white', 12)
  ax.text(mid(ex), 9.3, 'Encoder', ha='center', fontsize=18, weight='bold')

  _box(ax, dx, 0.2, w, 0.7, 'Target tokens, shifted right', 'white', 12)
  _box(ax, dx, 1.3, w, 0.9, 'Token embedding\n+ positional encoding', emb)
  ax.add_patch(patches.FancyBboxPatch(
      (dx - 0.35, 2.6), w + 0.7, 6.45, boxstyle='round,pad=0.05',
      linewidth=1.4, edgecolor='0.4', facecolor='0.95', linestyle='--'))
  ax.text(dx + w + 0.45, 5.8, 'x N', ha='left', va='center', fontsize=16)
  _box(ax, dx, 2.9, w, 1.0, 'Masked (causal)\nmulti-head self-attention',
       attn, 12)
  _box(ax, dx, 4.1, w, 0.55, 'Add & LayerNorm', norm)
  _box(ax, dx, 5.0, w, 1.2, 'Cross-attention:\nQ from the decoder,\nK, V from '
       'the encoder output', attn, 12)
  _box(ax, dx, 6.4, w, 0.55, 'Add & LayerNorm', norm)
  _box(ax, dx, 7.3, w, 1.0, 'Position-wise\nfeed-forward', ffn)
  _box(ax, dx, 8.45, w, 0.55, 'Add & LayerNorm', norm)
  for y0, y1 in ((0.9, 1.3), (2.2, 2.9), (3.9, 4.1), (4.65, 5.0),
                 (6.2, 6.4), (6.95, 7.3), (8.3, 8.45), (9.0, 9.9)):
    _arrow(ax, (mid(dx), y0), (mid(dx), y1))
  for y0, y1 in ((2.5, 4.375), (4.85, 6.675), (7.15, 8.725)):
    _residual(ax, dx, w, y0, y1, side=1)
  # Encoder output -> keys and values of every decoder layer.
  ax.plot([ex + w, 5.2, 5.2], [8.3, 8.3, 5.6], color='#c0392b', lw=2.0)
  _arrow(ax, (5.2, 5.6), (dx, 5.6), color='#c0392b')
  ax.text(5.35, 6.4, 'projected to\nkeys and values\nin every\ndecoder layer', fontsize=11,
          color='#c0392b', ha='left')
  _box(ax, dx, 9.9, w, 0.7, 'Linear (tied to the embedding)', '#d5c6e0', 12)
  _box(ax, dx, 11.0, w, 0.7, 'Softmax', '#d5c6e0')
  _box(ax, dx, 12.1, w, 0.8, 'Next-token probabilities', 'white')
  _arrow(ax, (mid(dx), 10.6), (mid(dx), 11.0))
  _arrow(ax, (mid(dx), 11.7), (mid(dx), 12.1))
  ax.text(mid(dx), 13.2, 'Decoder', ha='center', fontsize=18, weight='bold')
  fig.savefig(path, dpi=110, bbox_inches='tight')
  plt.close(fig)


# ------------------------------------------------------------- positions --
def positions(path):
  """The table PE[pos, j], and four of its columns as curves over pos.

  The axes say 'dimension j', not i: in the paper's formula i indexes the
  sine/cosine pair, and column j = 2i is a sine, j = 2i + 1 a cosine.
  """
  d_model = 128
  table = sinusoidal_positions(100, d_model)
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7.5),
                                    height_ratios=(3, 2))
  im = top.imshow(table, aspect='auto', cmap='RdBu', vmin=-1, vmax=1,
                  origin='lower')
  top.set_xlabel('dimension j of the encoding '
                 '(j = 2i: sine, j = 2i + 1: cosine)', fontsize=11)
  top.set_ylabel('position pos', fontsize=11)
  top.set_title(f'PE[pos, j], d_model = {d_model}', fontsize=12)
  fig.colorbar(im, ax=top, label='value')
  for j in (0, 10, 40, 80):
    bottom.plot(table[:, j], label=f'j = {j} (i = {j // 2})')
  bottom.set_xlabel('position pos', fontsize=11)
  bottom.set_ylabel('PE[pos, j]', fontsize=11)
  bottom.legend(fontsize=9, loc='upper left', bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  fig.savefig(path, dpi=110, bbox_inches='tight')
  plt.close(fig)


# ---------------------------------------------------------- learning rate --
def learning_rate(path):
  opt = ml_collections.ConfigDict(dict(
      learning_rate=512 ** -0.5 * 4000 ** -0.5, warmup_steps=4000,
      schedule='rsqrt'))
  schedule = optimizers.learning_rate_schedule(opt, 100_000)
  steps = np.arange(0, 100_000, 100)
  rates = np.asarray(jax.vmap(schedule)(jnp.asarray(steps)))
  fig, ax = plt.subplots(figsize=(6.5, 3.4))
  ax.plot(steps, rates * 1e4)
  ax.axvline(4000, color='0.6', ls='--', lw=0.8)
  # Below the curve's lowest point (step 100,000), clear of the peak.
  ax.annotate('end of warmup (4000 steps)', xy=(4000, rates.max() * 1e4 * 0.1),
              xytext=(15000, rates.max() * 1e4 * 0.1), fontsize=8,
              va='center', arrowprops=dict(arrowstyle='->', color='0.4'))
  ax.set_xlabel('training step')
  ax.set_ylabel('learning rate (x 1e-4)')
  ax.set_title('lrate = d_model^-0.5 min(step^-0.5, step warmup^-1.5)')
  fig.savefig(path, dpi=110, bbox_inches='tight')
  plt.close(fig)


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


FIGURES = {  # name: what draws it from the parsed arguments
    'architecture.png': lambda path, args: architecture(path),
    'attention_steps.png': lambda path, args: attention_steps(path),
    'multi_head.png': lambda path, args: multi_head(path),
    'masks.png': lambda path, args: masks(path),
    'sinusoidal_positions.png': lambda path, args: positions(path),
    'learning_rate.png': lambda path, args: learning_rate(path),
    'cross_attention.png': lambda path, args: cross_attention(path,
                                                              args.steps),
    'multi30k_cross_attention.png': lambda path, args: (
        multi30k_cross_attention(path, args.multi30k_workdir,
                                 args.multi30k_average_last)),
}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default=os.path.join(REPO, 'docs', 'figures'))
  parser.add_argument('--steps', type=int, default=400,
                      help='training steps of the reversal model')
  parser.add_argument(
      '--multi30k_workdir', default=os.environ.get('MULTI30K_WORKDIR'),
      help='workdir of a trained Multi30k run (default: $MULTI30K_WORKDIR); '
      'without one, multi30k_cross_attention.png is skipped')
  parser.add_argument('--multi30k_average_last', type=int, default=10,
                      help='checkpoints averaged, as in the guide, 8.1')
  parser.add_argument('--only', nargs='+', choices=sorted(FIGURES),
                      help='draw these figures only')
  args = parser.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  for name in args.only or FIGURES:
    if name == 'multi30k_cross_attention.png' and not args.multi30k_workdir:
      print(f'skipped {name}: no --multi30k_workdir (or MULTI30K_WORKDIR)')
      continue
    FIGURES[name](os.path.join(args.out, name), args)
  print(f'figures written to {args.out}')


if __name__ == '__main__':
  main()
