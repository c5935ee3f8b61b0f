"""What a sweep found, readable at a glance.

  DIR/report.md, DIR/report.csv   one row per setting, best first
  DIR/plots/objective_vs_<field>.png, curves.png, importances.png
  DIR/tensorboard/                 every setting in the HParams dashboard

Everything comes from the study's storage (parameters, values, the
objective reported at each eval, user attributes), so a report can be made
on any machine that reaches the storage, while the sweep runs or after.
"""
import csv
import datetime
import math
import os
import shutil
import warnings

import optuna
from optuna.trial import TrialState

from sweeping import study as study_lib

# PED-ANOVA (no scikit-learn, which Optuna's default fANOVA needs) compares
# the top quarter of the trials with all: below 8 that is one or two trials.
MIN_TRIALS_FOR_IMPORTANCE = 8
_STATE_ORDER = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1,
                TrialState.RUNNING: 2, TrialState.WAITING: 3,
                TrialState.FAIL: 4}


def rows(spec, study) -> list:
  """One dict per setting, sorted: complete by objective, then pruned by
  their last objective, then running and failed ones."""
  out = []
  for chain in study_lib.chains(study):
    last = chain[-1]
    row = {'trial': chain[0].number, 'state': last.state.name.lower()}
    row.update({name: last.params.get(name, '') for name in spec.fields})
    row[f'final {spec.objective}'] = last.value
    row[f'best {spec.objective}'] = last.user_attrs.get('best')
    row['step'] = last.user_attrs.get(
        'step', max(last.intermediate_values, default=0))
    row['wall time (s)'] = round(sum(_seconds(t) for t in chain), 1)
    row['runs'] = len(chain)
    row['reason'] = last.user_attrs.get('reason', '') if (
        last.state != TrialState.COMPLETE) else ''
    row['workdir'] = last.user_attrs['workdir']
    out.append(row)
  sign = 1 if spec.direction == 'min' else -1
  key = lambda r: (_STATE_ORDER[TrialState[r['state'].upper()]],  # noqa: E731
                   sign * r[f'final {spec.objective}']
                   if r[f'final {spec.objective}'] is not None else 0.0)
  return sorted(out, key=key)


def _seconds(trial) -> float:
  if trial.datetime_start is None:
    return 0.0
  end = trial.datetime_complete or datetime.datetime.now()
  return (end - trial.datetime_start).total_seconds()


# ---------------------------------------------------------------- table --
def _text(value) -> str:
  if value is None:
    return ''
  if isinstance(value, float):
    return f'{value:.4g}'
  return str(value)


def write_table(table: list, workdir: str, title: str):
  if not table:
    return
  columns = list(table[0])
  with open(os.path.join(workdir, 'report.csv'), 'w', newline='',
            encoding='utf-8') as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(table)
  lines = [f'# {title}', '', '| ' + ' | '.join(columns) + ' |',
           '|' + '---|' * len(columns)]
  lines += ['| ' + ' | '.join(_text(r[c]).replace('|', '/') for c in columns)
            + ' |' for r in table]
  with open(os.path.join(workdir, 'report.md'), 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')


# ---------------------------------------------------------------- plots --
def write_plots(spec, study, workdir: str):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  plots = os.path.join(workdir, 'plots')
  os.makedirs(plots, exist_ok=True)
  complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
  with warnings.catch_warnings():  # Optuna's plots are 'experimental'
    warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
    warnings.simplefilter('ignore', UserWarning)  # one-value axes
    present = {name for t in complete for name in t.params}
    for name in spec.fields:
      if name in present:  # a settings-only field may never have completed
        ax = optuna.visualization.matplotlib.plot_slice(study, params=[name])
        _save(plt, ax, os.path.join(plots, f'objective_vs_{name}.png'))
    _plot_curves(plt, spec, study, os.path.join(plots, 'curves.png'))
    if len(complete) >= MIN_TRIALS_FOR_IMPORTANCE and len(spec.fields) > 1:
      try:
        ax = optuna.visualization.matplotlib.plot_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(
                target_quantile=0.25))
        _save(plt, ax, os.path.join(plots, 'importances.png'))
      except (RuntimeError, ValueError) as e:  # e.g. no parameter varies
        print(f'no importance plot: {e}')


def _save(plt, ax, path: str):
  figure = ax.figure if hasattr(ax, 'figure') else ax.flat[0].figure
  figure.set_size_inches(6, 4)
  figure.tight_layout()
  figure.savefig(path, dpi=80)
  plt.close(figure)


def _plot_curves(plt, spec, study, path: str):
  """The objective at each eval, one line per setting (all its runs)."""
  figure, ax = plt.subplots(figsize=(6, 4))
  ax.set_prop_cycle(color=plt.cm.tab20.colors)  # 10 colours repeat too soon
  for chain in study_lib.chains(study):
    curve = {}
    for trial in chain:
      curve.update(trial.intermediate_values)
    if curve:
      steps = sorted(curve)
      ax.plot(steps, [curve[s] for s in steps], marker='.',
              label=f'{chain[0].number} ({chain[-1].state.name.lower()})')
  ax.set_xlabel('training step')
  ax.set_ylabel(spec.objective)
  ax.set_title(f'{spec.objective} of every trial')
  if ax.lines:
    ax.legend(fontsize='x-small', ncol=2)
  figure.tight_layout()
  figure.savefig(path, dpi=80)
  plt.close(figure)


# ----------------------------------------------------------- tensorboard --
def write_hparams(spec, table: list, workdir: str):
  """One HParams run per setting, rewritten whole each time."""
  from training.metrics_writer import summary_writer_class  # pylint: disable=g-import-not-at-top
  logdir = os.path.join(workdir, 'tensorboard')
  shutil.rmtree(logdir, ignore_errors=True)
  with summary_writer_class()(logdir) as writer:
    for row in table:
      hparams = {name: row[name] for name in spec.fields
                 if isinstance(row[name], (int, float, str, bool))}
      hparams['state'] = row['state']
      metrics = {}
      for name in (f'final {spec.objective}', f'best {spec.objective}',
                   'step'):
        value = row[name]
        metrics[name.replace(' ', '_')] = (float(value) if value is not None
                                           else math.nan)
      writer.add_hparams(hparams, metrics, name=f'trial_{row["trial"]}')


def write_report(spec, study, workdir: str, title: str) -> str:
  table = rows(spec, study)
  write_table(table, workdir, title)
  write_plots(spec, study, workdir)
  write_hparams(spec, table, workdir)
  return os.path.join(workdir, 'report.md')
