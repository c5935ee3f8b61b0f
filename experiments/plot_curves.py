r"""Training and evaluation curves of a run, from its metrics.jsonl, as a PNG.

  python experiments/plot_curves.py --metrics=workdirs/shakespeare_cpu \
      --output=experiments/figures/shakespeare_cpu.png [--title=...]

--metrics is a workdir or a metrics.jsonl file (recorded runs keep a copy
in experiments/). The left panel shows the train and eval losses against
the step; the right panel every other eval metric (BLEU, accuracy, ...),
if the run reported any.
"""
import argparse
import json
import os
import sys

import matplotlib
matplotlib.use('Agg')  # files only: no display
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top


def read_records(path: str) -> list[dict]:
  """The records of a workdir's metrics.jsonl (or of the file itself)."""
  if os.path.isdir(path):
    path = os.path.join(path, 'metrics.jsonl')
  with open(path, encoding='utf-8') as f:
    records = [json.loads(line) for line in f if line.strip()]
  if not records:
    sys.exit(f'error: {path} holds no records')
  return records


def series(records: list[dict], name: str) -> tuple[list, list]:
  """(steps, values) of one metric, in step order."""
  points = sorted((r['step'], r[name]) for r in records if name in r)
  return [s for s, _ in points], [v for _, v in points]


def plot(records: list[dict], output: str, title: str = ''):
  """Writes the figure; returns the names of the metrics drawn."""
  names = sorted({k for r in records for k in r if k != 'step'})
  extra = [n for n in names if n.startswith(('eval/', 'averaged/'))
           and not n.endswith(('/loss', '/perplexity', '/accuracy'))]
  fig, axes = plt.subplots(1, 2 if extra else 1, figsize=(
      11 if extra else 6, 3.8), squeeze=False)
  drawn = []
  for name in ('train/loss', 'eval/loss'):
    if name in names:
      axes[0, 0].plot(*series(records, name), label=name,
                      marker='o' if name.startswith('eval') else None)
      drawn.append(name)
  axes[0, 0].set(xlabel='step', ylabel='loss (nats per token)')
  axes[0, 0].legend()
  axes[0, 0].grid(alpha=0.3)
  for name in extra:
    axes[0, 1].plot(*series(records, name), marker='o', label=name)
    drawn.append(name)
  if extra:
    axes[0, 1].set(xlabel='step', ylabel='eval metric')
    axes[0, 1].legend()
    axes[0, 1].grid(alpha=0.3)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  fig.savefig(output, dpi=110)
  plt.close(fig)
  return drawn


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--metrics', required=True,
                      help='a workdir or a metrics.jsonl file')
  parser.add_argument('--output', required=True, help='the PNG to write')
  parser.add_argument('--title', default='')
  args = parser.parse_args()
  try:
    drawn = plot(read_records(args.metrics), args.output, args.title)
  except (OSError, ValueError) as e:
    raise SystemExit(f'error: {e}') from None
  print(f'{args.output}: {", ".join(drawn)}')


if __name__ == '__main__':
  main()
