r"""Makes every figure of docs/transformers.md.

  python docs/make_figures.py --out=docs/figures            # ~1 min, 2 cores
  python docs/make_figures.py --out=/tmp/figs --steps=20    # smoke test

Figures:
  architecture.png         the encoder-decoder, drawn with matplotlib patches
  sinusoidal_positions.png PE[pos, j] of Vaswani et al. 2017, section 3.5
  learning_rate.png        training.optimizers.learning_rate_schedule, paper's
                           settings (d_model 512, 4000 warmup steps)
  cross_attention.png      decoder-encoder attention of the default
                           experiment (configs/default.py, reversal),
                           trained here for --steps steps

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
import ml_collections
import numpy as np

import train
from configs import default
from configs.base_config import data_config
from input_data import synthetic
from models.config import model_config_from
from models.embeddings import sinusoidal_positions
from models.encoder_decoder import EncoderDecoder
from training import optimizers


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
  ax.text(4500, rates.max() * 1e4 * 0.95, 'end of warmup (4000 steps)',
          fontsize=8)
  ax.set_xlabel('training step')
  ax.set_ylabel('learning rate (x 1e-4)')
  ax.set_title('lrate = d_model^-0.5 min(step^-0.5, step warmup^-1.5)')
  fig.savefig(path, dpi=110, bbox_inches='tight')
  plt.close(fig)


# ------------------------------------------------------- cross-attention --
def train_reversal(steps: int, workdir: str):
  """The default experiment, shortened to `steps` steps on one device."""
  config = default.get_config()
  config.num_train_steps = steps
  config.num_devices = 1
  config.optimizer.warmup_steps = min(config.optimizer.warmup_steps,
                                      max(steps // 2, 1))
  config.log_every = max(steps // 4, 1)
  config.eval_every = steps
  config.checkpoint_every = steps
  config.data.num_eval_examples = 64
  config.decode.beam_size = 1
  with contextlib.redirect_stdout(io.StringIO()):
    result = train.train_and_evaluate(config, workdir)
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


def cross_attention(path, steps: int):
  with tempfile.TemporaryDirectory() as workdir:
    config, result = train_reversal(steps, workdir)
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
  accuracy = result.eval_metrics.get('eval/exact_match', float('nan'))
  fig.suptitle(f'Cross-attention after {steps} training steps on sequence '
               f'reversal (held-out exact match {accuracy:.2f})', fontsize=13)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return weights


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default=os.path.join(REPO, 'docs', 'figures'))
  parser.add_argument('--steps', type=int, default=400,
                      help='training steps of the reversal model')
  args = parser.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  architecture(os.path.join(args.out, 'architecture.png'))
  positions(os.path.join(args.out, 'sinusoidal_positions.png'))
  learning_rate(os.path.join(args.out, 'learning_rate.png'))
  cross_attention(os.path.join(args.out, 'cross_attention.png'), args.steps)
  print(f'figures written to {args.out}')


if __name__ == '__main__':
  main()
