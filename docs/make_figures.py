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

The attention figures are drawn by docs/attention_figures.py.
"""
import argparse
import os
import sys

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

from docs.attention_figures import (attention_steps, cross_attention, masks,
                                    multi30k_cross_attention, multi_head,
                                    reversal_config)  # tests/test_guide.py
from models.embeddings import sinusoidal_positions
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
  # Below the curve's lowest point (step 100,000), clear of the peak.
  ax.annotate('end of warmup (4000 steps)', xy=(4000, rates.max() * 1e4 * 0.1),
              xytext=(15000, rates.max() * 1e4 * 0.1), fontsize=8,
              va='center', arrowprops=dict(arrowstyle='->', color='0.4'))
  ax.set_xlabel('training step')
  ax.set_ylabel('learning rate (x 1e-4)')
  ax.set_title('lrate = d_model^-0.5 min(step^-0.5, step warmup^-1.5)')
  fig.savefig(path, dpi=110, bbox_inches='tight')
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
