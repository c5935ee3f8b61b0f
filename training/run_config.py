"""The resolved config of a run, kept in its workdir as `config.json`.

train.py writes it when a run starts and compares it when a run resumes;
the commands that use a trained workdir (evaluate, predict, export) read it
back, so they need no --config.
"""
import json
import os

import ml_collections

from errors import UserError

FILENAME = 'config.json'
# Fields that may change between the legs of one run: how long it trains and
# how often it logs, evaluates and saves; how long a save may take; the
# device peak, which only labels the progress line; whether non-finite
# updates are skipped, so that a diverged run can go on past its bad step;
# and how a mesh lays the state out (a checkpoint restores under any mesh).
# Anything else changes the run. A name covers the fields under it.
MAY_CHANGE = ('num_train_steps', 'log_every', 'eval_every',
              'checkpoint_every', 'keep_checkpoints',
              'average_last_checkpoints', 'checkpoint_timeout_s',
              'peak_flops_per_device', 'skip_nonfinite_updates', 'mesh',
              'logical_axis_rules')
# Fields renamed since runs were saved (old name: new name): a config.json
# is read under the new names, so old runs resume, evaluate and export.
RENAMED = {'data.task': 'data.synthetic_task',
           'data.min_len': 'data.synthetic_min_len',
           'data.max_len': 'data.synthetic_max_len',
           'model.cpu_bf16_dots': 'model.cpu_fast_dots'}


def flatten(config, prefix: str = '') -> dict:
  """{'model.d_model': 64, ...} with JSON values (tuples become lists)."""
  out = {}
  for name, value in config.items():
    if isinstance(value, (ml_collections.ConfigDict, dict)) and name != (
        'split_fractions'):
      out.update(flatten(value, f'{prefix}{name}.'))
    else:
      out[prefix + name] = json.loads(json.dumps(_plain(value)))
  return out


def _plain(value):
  if isinstance(value, (ml_collections.ConfigDict, dict)):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


def save(config, workdir: str):
  """Writes `workdir/config.json` (atomically: write, then rename)."""
  path = os.path.join(workdir, FILENAME)
  with open(path + '.tmp', 'w', encoding='utf-8') as f:
    json.dump(_plain(config), f, indent=2, sort_keys=True)
    f.write('\n')
  os.replace(path + '.tmp', path)


def load_flat(workdir: str) -> dict | None:
  """The flattened config a run in `workdir` started with (None: none)."""
  path = os.path.join(workdir, FILENAME)
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding='utf-8') as f:
      return renamed(flatten(json.load(f)))
  except (OSError, json.JSONDecodeError) as e:
    raise UserError(f'{path} cannot be read: {e}') from None


def renamed(flat: dict) -> dict:
  """`flat` (a flattened config) under the current names (RENAMED)."""
  return {RENAMED.get(name, name): value for name, value in flat.items()}


def load(workdir: str, base: ml_collections.ConfigDict
         ) -> ml_collections.ConfigDict:
  """The run's config laid over `base` (configs.base_config.base_config()),
  so fields added to the base since the run started keep their defaults."""
  path = os.path.join(workdir, FILENAME)
  if not os.path.exists(path):
    raise UserError(f'{workdir} has no {FILENAME}: not a training workdir')
  try:
    with open(path, encoding='utf-8') as f:
      saved = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise UserError(f'{path} cannot be read: {e}') from None
  flat = renamed(flatten(saved)) if isinstance(saved, dict) else {}
  # Every field of a run's config.json is declared (save() wrote them all,
  # and fields are only added to the base, or renamed in RENAMED): any
  # other key means the file is another program's, e.g. a Hugging Face
  # export's config.json.
  declared = flatten(base)
  unknown = [k for k in flat if k not in declared and not any(
      k.startswith(d + '.') for d in declared)]
  if not flat or unknown:
    raise UserError(
        f'{path} is not the config.json of a run of train.py (' +
        (f'unknown field {unknown[0]!r}' if unknown else 'no fields') + ')')
  with base.unlocked(), base.ignore_type():
    base.update_from_flattened_dict(flat)
  return base


def differences(saved: dict, current: dict) -> list[str]:
  """Fields (dotted) whose value differs between two flattened configs,
  except those in MAY_CHANGE."""
  names = sorted(set(saved) | set(current))
  return [n for n in names if n.split('.')[0] not in MAY_CHANGE
          and saved.get(n, '<absent>') != current.get(n, '<absent>')]


def load_or(workdir: str, base: ml_collections.ConfigDict,
            fallback: ml_collections.ConfigDict | None = None
            ) -> ml_collections.ConfigDict:
  """The config of the run in `workdir`, for the commands that use it
  (evaluate, predict, export): its config.json, or `fallback` (a --config
  on their command line) for a run that has none."""
  if not os.path.isdir(workdir):
    raise UserError(f'--workdir={workdir} ' + (
        'is a file, not a training workdir' if os.path.exists(workdir)
        else 'does not exist'))
  if os.path.exists(os.path.join(workdir, FILENAME)):
    return load(workdir, base)
  if fallback is None:
    raise UserError(f'--workdir={workdir} has no {FILENAME}; give the '
                    "run's --config=")
  return fallback


def check_task(workdir: str, config):
  """Fails in one line if the run in `workdir` trains another task: a
  workdir mixed up with another experiment's, which the checkpoint's
  shapes would otherwise report as a missing optimizer entry."""
  saved = load_flat(workdir)
  if saved is not None and saved.get('task', config.task) != config.task:
    raise UserError(
        f"{workdir} holds a run of task {saved['task']!r} but this config "
        f'trains {config.task!r}; use another --workdir for a new run')


def check_resume(workdir: str, config, base: ml_collections.ConfigDict):
  """Fails in one line if the run in `workdir` started with another config,
  listing the differing fields with their old and new values.

  A field added to `base` (configs.base_config.base_config()) since the run
  started counts as its default there, as in `load`: a new field's default
  keeps the behaviour from before it existed, so only a changed value
  differs."""
  saved = load_flat(workdir)
  if saved is None:
    return
  saved = {**flatten(base), **saved}
  current = flatten(config)
  changed = differences(saved, current)
  if changed:
    shown = ', '.join(f'{name} ({saved.get(name, "<absent>")!r} -> '
                      f'{current.get(name, "<absent>")!r})'
                      for name in changed[:6])
    more = f' and {len(changed) - 6} more' if len(changed) > 6 else ''
    raise UserError(
        f'{workdir} holds a run with another config: {shown}{more} differ '
        f'from its {FILENAME}; a resumed run may change only '
        f'{", ".join(MAY_CHANGE)}; use another --workdir for a new run')
