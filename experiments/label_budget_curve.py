r"""SST-2 dev accuracy against the number of training labels, one arm at a time.

  DATA_DIR=../shared/data python experiments/label_budget_curve.py \
      --arm=random --workdir=workdirs/label_budget
  DATA_DIR=../shared/data python experiments/label_budget_curve.py \
      --arm=pretrained --init_from=workdirs/bert_mini_wikitext2_10k \
      --workdir=workdirs/label_budget
  DATA_DIR=../shared/data python experiments/label_budget_curve.py \
      --arm=minilm --workdir=workdirs/label_budget
  python experiments/label_budget_curve.py --plot \
      --workdir=workdirs/label_budget --output=experiments/figures/x.png

For each budget (`configs/bert_finetune.py` labels=1000|5000|all: a nested
subset of SST-2 train after 2,000 sentences are held out), the arm's
learning rate is chosen by `sweep.py` (the config's get_sweep(): a grid of
four, scored on the held-out slice, never on dev); a budget not in
--swept reuses the rate of the largest swept one (from results.json when
its sweep's workdir is gone). Then `train.py` runs with
that rate for --seeds seeds at 1,000 labels (1 elsewhere), evaluated on
dev, which is the reported result. Everything is a subprocess of the two
CLIs, so each step resumes or is skipped when run again; results go to
WORKDIR/ARM/results.json (and a table on stdout).

Arms: random (BERT-Mini from random weights), pretrained (BERT-Mini from
--init_from, a pre-training workdir), minilm (the real all-MiniLM-L6-v2
weights), minilm_random (MiniLM's architecture from random weights).
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys

ARMS = {'random': 'size=mini', 'pretrained': 'size=mini',
        'minilm': 'init=minilm', 'minilm_random': 'size=minilm'}
BUDGETS = ('1000', '5000', 'all')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_arg(arm: str, labels: str) -> str:
  return (f'{REPO}/configs/bert_finetune.py:{ARMS[arm]},data=sst2,'
          f'labels={labels}')


def label_count(labels: str) -> int:
  """The labels a budget trains on: 'all' is every row of the SST-2 train
  file ($DATA_DIR) less the config's held-out slice."""
  if labels != 'all':
    return int(labels)
  from configs import bert_finetune  # pylint: disable=g-import-not-at-top
  data = bert_finetune.get_config(config_arg('random', 'all').split(':')[1]).data
  path = os.path.join(data.data_dir, data.file_pattern.format(
      split=data.train_split))
  with open(path, encoding='utf-8') as f:
    rows = sum(1 for line in f if line.strip()) - 1  # less the header
  return rows - data.heldout_examples


def run(command: list[str]):
  """Runs a CLI; its own output goes to the terminal; a failure stops us."""
  print('+', ' '.join(command), flush=True)
  code = subprocess.call(command, cwd=REPO)
  if code:
    sys.exit(f'error: exit code {code} from {command[1]}')


def read_metrics(workdir: str) -> list[dict]:
  """The run's metrics.jsonl records (training.metrics_writer's reader)."""
  from training import metrics_writer  # pylint: disable=g-import-not-at-top
  return metrics_writer.read_metrics(workdir)


def final_eval_loss(trial_dir: str) -> float:
  """A trial's held-out eval/loss at its last evaluation (inf if none)."""
  losses = [float('inf')]
  if os.path.exists(os.path.join(trial_dir, 'metrics.jsonl')):
    losses += [r['eval/loss'] for r in read_metrics(trial_dir)
               if 'eval/loss' in r]
  return losses[-1]


def best_learning_rate(sweep_dir: str) -> tuple[float, float]:
  """(learning rate, held-out accuracy) of the best complete trial.

  Accuracy on 2,000 sentences moves in steps of 0.05 points, so two rates
  can tie (MiniLM at 5,000 labels did, 2026-12-06): the lower held-out
  loss breaks the tie, not the order of the report."""
  with open(os.path.join(sweep_dir, 'report.csv'), encoding='utf-8') as f:
    rows = [r for r in csv.DictReader(f) if r['state'] == 'complete']
  if not rows:
    sys.exit(f'error: {sweep_dir} has no complete trial')
  best = max(rows, key=lambda r: (
      float(r['final eval/accuracy']),
      -final_eval_loss(os.path.join(sweep_dir, r['workdir']))))
  return (float(best['optimizer.learning_rate']),
          float(best['final eval/accuracy']))


def dev_accuracy(workdir: str, steps: int) -> float | None:
  """eval/accuracy at the final step of a finished run, else None."""
  if not os.path.exists(os.path.join(workdir, 'metrics.jsonl')):
    return None
  final = [r['eval/accuracy'] for r in read_metrics(workdir)
           if r.get('step') == steps and 'eval/accuracy' in r]
  return final[-1] if final else None


def recorded_rate(results: dict, swept: list[str], labels: str):
  """(rate, held-out accuracy, budget) of the largest swept budget below
  `labels` in results.json, for when its sweep's workdir is gone (workdirs
  do not outlive a session; results.json is committed); Nones if none."""
  below = [b for b in swept if BUDGETS.index(b) < BUDGETS.index(labels)
           and results.get(b, {}).get('chosen_at') == b]
  if not below:
    return None, None, None
  chosen = results[max(below, key=BUDGETS.index)]
  return (chosen['learning_rate'], chosen['heldout_accuracy'],
          chosen['chosen_at'])


def run_arm(args) -> dict:
  from configs import bert_finetune  # pylint: disable=g-import-not-at-top
  arm_dir = os.path.join(os.path.abspath(args.workdir), args.arm)
  extra = [f'--config.init_from={os.path.abspath(args.init_from)}'
           ] if args.init_from else []
  results_path = os.path.join(arm_dir, 'results.json')
  results = {}
  if os.path.exists(results_path):
    with open(results_path, encoding='utf-8') as f:
      results = json.load(f)
  swept = [b for b in BUDGETS if b in args.swept.split(',')]
  rate = None
  for labels in args.budgets.split(','):
    steps = bert_finetune.LABEL_BUDGET_STEPS[labels]
    if labels in swept:
      sweep_dir = os.path.join(arm_dir, f'labels_{labels}', 'sweep')
      if not os.path.exists(os.path.join(sweep_dir, 'report.csv')):
        run([sys.executable, 'sweep.py', f'--config={config_arg(args.arm, labels)}',
             f'--workdir={sweep_dir}', '--workers=1'] + extra)
      rate, heldout = best_learning_rate(sweep_dir)
      chosen_at = labels
    if rate is None and labels not in swept:
      rate, heldout, chosen_at = recorded_rate(results, swept, labels)
    if rate is None:
      sys.exit(f'error: --budgets={args.budgets}: {labels} labels need a '
               'swept budget before it (--swept)')
    accuracies = []
    for seed in range(args.seeds if labels == '1000' else 1):
      workdir = os.path.join(arm_dir, f'labels_{labels}', f'seed_{seed}')
      if dev_accuracy(workdir, steps) is None:
        run([sys.executable, 'train.py', f'--config={config_arg(args.arm, labels)}',
             f'--workdir={workdir}', f'--config.seed={seed}',
             f'--config.optimizer.learning_rate={rate}'] + extra)
      accuracies.append(dev_accuracy(workdir, steps))
    results[labels] = dict(
        labels=label_count(labels),
        learning_rate=rate, chosen_at=chosen_at, heldout_accuracy=heldout,
        dev_accuracy=accuracies, mean=statistics.mean(accuracies),
        spread=max(accuracies) - min(accuracies), init_from=args.init_from)
    os.makedirs(arm_dir, exist_ok=True)
    with open(results_path, 'w', encoding='utf-8') as f:
      json.dump(results, f, indent=1)
  return results


def table(arm: str, results: dict) -> str:
  lines = [f'arm {arm}', '| labels | learning rate (chosen at) | held-out '
           'accuracy | dev accuracy (each seed) | mean | spread |',
           '|---:|---|---:|---|---:|---:|']
  for r in results.values():
    each = ', '.join(f'{100 * a:.2f}' for a in r['dev_accuracy'])
    lines.append(f"| {r['labels']:,} | {r['learning_rate']:g} "
                 f"({r['chosen_at']}) | {100 * r['heldout_accuracy']:.2f} | "
                 f"{each} | {100 * r['mean']:.2f} | {100 * r['spread']:.2f} |")
  return '\n'.join(lines)


def plot(workdir: str, output: str):
  """Dev accuracy against labels (log scale), one line per arm found."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4))
  for arm in ARMS:
    path = os.path.join(workdir, arm, 'results.json')
    if not os.path.exists(path):
      continue
    with open(path, encoding='utf-8') as f:
      points = sorted(json.load(f).values(), key=lambda r: r['labels'])
    x = [p['labels'] for p in points]
    y = [100 * p['mean'] for p in points]
    low = [100 * (p['mean'] - min(p['dev_accuracy'])) for p in points]
    high = [100 * (max(p['dev_accuracy']) - p['mean']) for p in points]
    ax.errorbar(x, y, yerr=[low, high], marker='o', capsize=3, label=arm)
  ax.set_xscale('log')
  ax.set_xlabel('SST-2 training labels (log scale)')
  ax.set_ylabel('SST-2 dev accuracy (%)')
  ax.set_title('Fine-tuning by label budget (bars: min-max over seeds)')
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(output, dpi=120)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--arm', choices=sorted(ARMS))
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--init_from', default='')
  parser.add_argument('--budgets', default=','.join(BUDGETS))
  parser.add_argument('--swept', default='1000,5000')
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--plot', action='store_true')
  parser.add_argument('--output', default='label_budget.png')
  args = parser.parse_args()
  sys.path.insert(0, REPO)
  if args.plot:
    plot(args.workdir, args.output)
    return
  if args.arm is None:
    parser.error('--arm is required unless --plot')
  if (args.arm == 'pretrained') != bool(args.init_from):
    parser.error('--init_from is given with --arm=pretrained, and only then')
  for labels in args.budgets.split(','):
    if labels not in BUDGETS:
      parser.error(f'--budgets: {labels!r} is not one of {", ".join(BUDGETS)}')
  print(table(args.arm, run_arm(args)))


if __name__ == '__main__':
  main()
