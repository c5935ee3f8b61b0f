"""The search space of a sweep: what a config module's `get_sweep()` returns.

A config file may define, next to `get_config(arg=None)`:

  def get_sweep(arg=None):
    return dict(
        grid={'optimizer.learning_rate': [1e-3, 3e-3],   # product of values
              'model.num_layers': [1, 2]},
        # or ranges={'optimizer.learning_rate': ('loguniform', 1e-4, 1e-2),
        #            'model.dropout_rate': ('uniform', 0.0, 0.3),
        #            'optimizer.warmup_steps': ('int', 100, 1000),
        #            'label_smoothing': ('categorical', [0.0, 0.1])},
        # and/or settings=[{...}, ...]: explicit settings, run first
        objective='eval/loss', direction='min',
        sampler='grid',          # 'grid', 'random' or 'tpe'
        sampler_args={},         # keyword arguments of that Optuna sampler
        pruner='none',           # 'none', 'median' or 'hyperband'
        pruner_args={},          # keyword arguments of that Optuna pruner
        budget=4,                # trials in the whole study
        fixed={'num_train_steps': 1000},  # every trial's overrides
        seed=0)                  # the sampler's

Plain dicts and tuples keep config files free of sweep imports. Every check
runs before a study or a trial exists and fails with one line naming the
culprit (`SpecError`).
"""
import dataclasses
import importlib.util
import itertools
import json
import os

import ml_collections

from errors import UserError
import tasks

RANGE_KINDS = ('uniform', 'loguniform', 'int', 'categorical')
SAMPLERS = ('grid', 'random', 'tpe')
PRUNERS = ('none', 'median', 'hyperband')
_KEYS = ('grid', 'settings', 'ranges', 'objective', 'direction', 'sampler',
         'sampler_args', 'pruner', 'pruner_args', 'budget', 'fixed', 'seed')


class SpecError(UserError):
  """A sweep spec that cannot run; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Range:
  kind: str                      # one of RANGE_KINDS
  low: float | int | None = None
  high: float | int | None = None
  choices: tuple = ()            # categorical only


@dataclasses.dataclass(frozen=True)
class SweepSpec:
  grid: dict           # field -> tuple of values
  settings: tuple      # of {field: value} dicts
  ranges: dict         # field -> Range
  objective: str       # e.g. 'eval/loss'
  direction: str       # 'min' or 'max'
  sampler: str
  sampler_args: dict
  pruner: str
  pruner_args: dict
  budget: int
  fixed: dict          # field -> value, for every trial
  seed: int

  @property
  def fields(self) -> list:
    """Every swept field, in a stable order (report columns)."""
    names = list(self.grid) + list(self.ranges)
    for setting in self.settings:
      names += [n for n in setting if n not in names]
    return list(dict.fromkeys(names))

  def grid_settings(self) -> list:
    """The grid as a list of {field: value}, in product order."""
    names = list(self.grid)
    return [dict(zip(names, values))
            for values in itertools.product(*self.grid.values())]

  def better(self, a: float, b: float) -> bool:
    return a < b if self.direction == 'min' else a > b

  def fingerprint(self) -> str:
    """A canonical text of the spec: a resumed study must match it."""
    return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)


# ------------------------------------------------------- config modules --
def load_config_module(path: str):
  """The Python module of a config file, as config_flags would load it."""
  if not os.path.isfile(path):
    raise SpecError(f'--config={path}: no such file')
  spec = importlib.util.spec_from_file_location(
      'sweep_config_' + os.path.basename(path).removesuffix('.py'), path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _call(function, arg):
  # config_flags passes the text after ':' only when there is one.
  return function(arg) if arg is not None else function()


def sweep_from_module(module, path: str, arg: str | None) -> dict:
  if not hasattr(module, 'get_sweep'):
    raise SpecError(f'{path} defines no get_sweep(); see sweeping/spec.py')
  try:
    raw = _call(module.get_sweep, arg)
  except UserError:
    raise
  except ValueError as e:  # a config file's get_sweep: a bad --config=...:arg
    raise UserError(str(e)) from e
  if not isinstance(raw, dict):
    raise SpecError(f'{path}: get_sweep() returned {type(raw).__name__}, '
                    'not a dict')
  return raw


# -------------------------------------------------------------- metrics --
def reported_metrics(config) -> set:
  """The 'eval/...' names that train.py writes for this config (from the
  tasks themselves: tasks.eval_metric_names)."""
  return set(tasks.eval_metric_names(config))


# --------------------------------------------------------------- fields --
def set_field(config, name: str, value, where: str):
  """Sets `config.<name>` (dotted) or fails naming the field."""
  *parents, leaf = name.split('.')
  node = config
  for part in parents:
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      raise SpecError(f'unknown config field {name!r} in {where}')
    node = node[part]
  if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
    raise SpecError(f'unknown config field {name!r} in {where}')
  try:
    node[leaf] = value
  except (TypeError, ValueError) as e:
    raise SpecError(f'{where}: {name}={value!r} does not fit the config '
                    f'field: {" ".join(str(e).split())}') from None


def check_values(config, fields: dict, where: str):
  """Each value fits its field (on a copy of the config)."""
  for name, value in fields.items():
    set_field(config.copy_and_resolve_references(), name, value, where)


# ---------------------------------------------------------------- parse --
def _ranges(raw: dict, config) -> dict:
  out = {}
  for name, item in raw.items():
    set_field(config.copy_and_resolve_references(), name,
              _probe_value(item), f'ranges[{name!r}]')
    out[name] = _range(name, item)
  return out


def _probe_value(item):
  """A value of the range, for the field's type check."""
  if isinstance(item, (tuple, list)) and len(item) >= 2:
    if item[0] == 'categorical':
      return item[1][0] if item[1] else None
    return item[1]
  return None


def _range(name: str, item) -> Range:
  if not isinstance(item, (tuple, list)) or not item or item[0] not in \
      RANGE_KINDS:
    raise SpecError(f'ranges[{name!r}] = {item!r}: expected (kind, ...) with '
                    f'kind one of {", ".join(RANGE_KINDS)}')
  kind = item[0]
  if kind == 'categorical':
    if len(item) != 2 or not isinstance(item[1], (tuple, list)):
      raise SpecError(f"ranges[{name!r}]: expected ('categorical', [values])")
    if not item[1]:
      raise SpecError(f'ranges[{name!r}]: empty categorical list')
    return Range(kind, choices=tuple(item[1]))
  if len(item) != 3:
    raise SpecError(f"ranges[{name!r}]: expected ('{kind}', low, high)")
  low, high = item[1], item[2]
  if low > high:
    raise SpecError(f'ranges[{name!r}]: empty range ({kind} from {low} to '
                    f'{high})')
  if kind == 'loguniform' and low <= 0:
    raise SpecError(f'ranges[{name!r}]: log range must be above zero '
                    f'(low is {low})')
  if kind == 'int' and not (isinstance(low, int) and isinstance(high, int)):
    raise SpecError(f'ranges[{name!r}]: int range needs int bounds')
  return Range(kind, low, high)


def _grid(raw: dict, config) -> dict:
  out = {}
  for name, values in raw.items():
    if not isinstance(values, (tuple, list)):
      raise SpecError(f'grid[{name!r}] = {values!r}: expected a list')
    if not values:
      raise SpecError(f'grid[{name!r}]: empty list of values')
    for value in values:
      set_field(config.copy_and_resolve_references(), name, value,
                f'grid[{name!r}]')
    out[name] = tuple(values)
  return out


def _settings(raw, config) -> tuple:
  if not isinstance(raw, (tuple, list)):
    raise SpecError(f'settings = {raw!r}: expected a list of dicts')
  for i, setting in enumerate(raw):
    if not isinstance(setting, dict) or not setting:
      raise SpecError(f'settings[{i}]: expected a non-empty dict of fields')
    check_values(config, setting, f'settings[{i}]')
  return tuple(dict(s) for s in raw)


def parse_spec(raw: dict, config, overrides: dict | None = None) -> SweepSpec:
  """Checks a get_sweep() dict against `config` -> SweepSpec.

  `config` already holds the command line's --config.* `overrides`; they
  may not touch a swept field (the sweep would silently not vary it).
  """
  unknown = set(raw) - set(_KEYS)
  if unknown:
    raise SpecError(f'unknown sweep key(s) {", ".join(sorted(unknown))}; '
                    f'expected {", ".join(_KEYS)}')
  fixed = dict(raw.get('fixed') or {})
  check_values(config, fixed, 'fixed')
  config = config.copy_and_resolve_references()
  for name, value in fixed.items():  # the command line wins over `fixed`
    if name not in (overrides or {}):
      set_field(config, name, value, 'fixed')
  grid = _grid(raw.get('grid') or {}, config)
  ranges = _ranges(raw.get('ranges') or {}, config)
  if 'settings' in raw and not raw['settings']:
    raise SpecError('settings: empty list')
  settings = _settings(raw.get('settings') or (), config)
  if not (grid or ranges or settings):
    raise SpecError('the sweep has no grid, ranges or settings')
  if grid and (ranges or settings):
    raise SpecError('a grid cannot be mixed with ranges or settings')
  default_sampler = 'tpe' if ranges else 'grid'
  sampler = raw.get('sampler', default_sampler)
  if sampler not in SAMPLERS:
    raise SpecError(f'sampler={sampler!r} is not one of {", ".join(SAMPLERS)}')
  if (sampler == 'grid') == bool(ranges):
    raise SpecError(f'sampler={sampler!r} does not fit the space: grids and '
                    'settings use grid, ranges use random or tpe')
  spec = SweepSpec(
      grid=grid, settings=settings, ranges=ranges,
      objective=_objective(raw, config), direction=_direction(raw),
      sampler=sampler, sampler_args=dict(raw.get('sampler_args') or {}),
      pruner=_pruner(raw),
      pruner_args=dict(raw.get('pruner_args') or {}),
      budget=0, fixed=fixed, seed=int(raw.get('seed', 0)))
  for name in set(spec.fields) & set(overrides or {}):
    raise SpecError(f'--config.{name} is swept by the spec; drop the override')
  return dataclasses.replace(spec, budget=_budget(raw, spec))


def _objective(raw, config) -> str:
  objective = raw.get('objective')
  reported = reported_metrics(config)
  if objective not in reported:
    raise SpecError(f'objective {objective!r} is not reported by task '
                    f'{config.task!r} with this config; it reports '
                    f'{", ".join(sorted(reported))}')
  return objective


def _direction(raw) -> str:
  direction = raw.get('direction')
  if direction not in ('min', 'max'):
    raise SpecError(f"direction={direction!r}: expected 'min' or 'max'")
  return direction


def _pruner(raw) -> str:
  pruner = raw.get('pruner', 'none')
  if pruner not in PRUNERS:
    raise SpecError(f'pruner={pruner!r} is not one of {", ".join(PRUNERS)}')
  return pruner


def _budget(raw, spec: SweepSpec) -> int:
  fixed_size = len(spec.grid_settings()) if spec.grid else len(spec.settings)
  what = 'the grid' if spec.grid else 'the settings list'
  budget = raw.get('budget', None if spec.ranges else fixed_size)
  if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
    raise SpecError(f'budget={budget!r}: expected a positive number of trials')
  if budget < fixed_size:
    raise SpecError(f'budget={budget} is smaller than {what} '
                    f'({fixed_size} settings)')
  if not spec.ranges and budget > fixed_size:
    raise SpecError(f'budget={budget} is larger than {what} ({fixed_size} '
                    'settings, each run once)')
  return budget

