"""The Optuna study of a sweep: storage, sampler, pruner, budget, retries.

A *setting* is one point of the search space; its first trial runs in
`trials/<number>/`. A trial that dies with its worker (stale heartbeat) or
is interrupted is failed and re-queued by Optuna's
RetryHeartbeatStaleTrialCallback; the copy inherits the user attribute
'workdir', so it resumes from the original trial's checkpoints. The budget
counts settings, not retries.
"""
import hashlib
import random
import time
import warnings

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
import sqlalchemy

from errors import UserError
from sweeping.spec import SpecError, SweepSpec

MAX_RETRY = 3           # re-runs of a setting whose worker died
GRACE_HEARTBEATS = 3    # missed heartbeats before a trial counts as dead
_READY_TIMEOUT_S = 120  # a joining worker waits this long for the creator
_CREATE_ATTEMPTS = 5
with warnings.catch_warnings():  # 'experimental' since Optuna 2.8
  warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
  retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
  # A trial stopped on purpose (Ctrl-C, SIGTERM) resumes however often.
  resume = RetryHeartbeatStaleTrialCallback(max_retry=None)


# --------------------------------------------------------------- storage --
def make_storage(url: str, heartbeat_s: int):
  """An RDB URL (sqlite, postgresql, mysql) with heartbeats, or a path:
  Optuna's journal file (shared file systems; no heartbeat in Optuna's
  journal backend, so dead workers' trials stay RUNNING there)."""
  if '://' not in url:
    return optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(url))
  if url.startswith('postgresql://'):
    # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the project
    # ships psycopg2 (psycopg2-binary).
    url = 'postgresql+psycopg2://' + url[len('postgresql://'):]
  # SQLite lets one writer in at a time: wait for the lock, not fail.
  engine = ({'connect_args': {'timeout': 60}} if url.startswith('sqlite')
            else {'pool_pre_ping': True})
  for attempt in range(_CREATE_ATTEMPTS):
    try:
      return optuna.storages.RDBStorage(
          url, engine_kwargs=engine, heartbeat_interval=heartbeat_s,
          grace_period=GRACE_HEARTBEATS * heartbeat_s,
          heartbeat_stale_trial_callback=retry)
    except sqlalchemy.exc.DBAPIError:
      # Workers started together race to create the tables ('table
      # already exists'); the loser finds them made on its next try.
      if attempt == _CREATE_ATTEMPTS - 1:
        raise
      time.sleep(1 + random.random())


def open_storage(url: str, heartbeat_s: int):
  """make_storage, with a storage that cannot be opened reported as a
  ValueError of one line naming the URL, its password hidden."""
  try:
    return make_storage(url, heartbeat_s)
  except (ImportError, sqlalchemy.exc.SQLAlchemyError, OSError,
          ValueError) as e:
    reason = ' '.join(str(getattr(e, 'orig', None) or e).split())[:300]
    raise UserError(f'--storage={redact(url)}: '
                    + hide_password(reason, url)) from None


def redact(url: str) -> str:
  """`url` with its password as '***', for anything printed or written
  (a journal file path is returned as it is)."""
  if '://' not in url:
    return url
  try:
    parsed = sqlalchemy.engine.make_url(url)
  except (sqlalchemy.exc.ArgumentError, ValueError):
    # Not parseable: hide whatever sits between 'user:' and '@'.
    scheme, _, rest = url.partition('://')
    userinfo, at, host = rest.rpartition('@')
    if at and ':' in userinfo:
      userinfo = userinfo.split(':', 1)[0] + ':***'
    return f'{scheme}://{userinfo}{at}{host}'
  return parsed.render_as_string(hide_password=True)


def hide_password(text: str, url: str) -> str:
  """`text` (e.g. a driver's error) with `url`'s password replaced."""
  try:
    password = sqlalchemy.engine.make_url(url).password if '://' in url \
        else None
  except (sqlalchemy.exc.ArgumentError, ValueError):
    password = None
  text = text.replace(url, redact(url))
  return text.replace(password, '***') if password else text


def has_heartbeat(storage) -> bool:
  return isinstance(storage, optuna.storages.RDBStorage)


# -------------------------------------------------- samplers and pruners --
def make_sampler(spec: SweepSpec, salt: str = ''):
  """Grid: Optuna's GridSampler gives trial n grid point n, so concurrent
  workers never pick the same point. Random/TPE: the seed is mixed with
  `salt` (process and worker), or every worker would propose the same
  points."""
  args = dict(spec.sampler_args)
  try:
    if spec.sampler == 'grid':
      if spec.grid:
        return optuna.samplers.GridSampler(
            {name: list(values) for name, values in spec.grid.items()},
            seed=spec.seed, **args)
      return optuna.samplers.RandomSampler(seed=spec.seed)  # all enqueued
    seed = int(hashlib.sha256(f'{spec.seed}/{salt}'.encode()).hexdigest(),
               16) % 2**31
    if spec.sampler == 'random':
      return optuna.samplers.RandomSampler(seed=seed, **args)
    return optuna.samplers.TPESampler(seed=seed, **args)
  except TypeError as e:
    raise SpecError(f'sampler_args {args}: {e}') from None


def make_pruner(spec: SweepSpec, num_train_steps: int):
  """Pruners compare objective values reported at the same training step."""
  args = dict(spec.pruner_args)
  try:
    if spec.pruner == 'median':
      return optuna.pruners.MedianPruner(**args)
    if spec.pruner == 'hyperband':
      args.setdefault('max_resource', num_train_steps)
      return optuna.pruners.HyperbandPruner(**args)
    if args:
      raise SpecError(f"pruner_args {args} given but pruner is 'none'")
    return optuna.pruners.NopPruner()
  except (TypeError, ValueError) as e:
    raise SpecError(f'pruner_args {args}: {" ".join(str(e).split())}') \
        from None


# ----------------------------------------------------------------- study --
def open_study(storage, name: str, spec: SweepSpec, fingerprint: str,
               sampler, pruner):
  """Creates the study, or joins it when another run or worker did.

  The creator enqueues the explicit settings, then marks the study ready
  with the sweep's fingerprint; a joining worker waits for that mark, and
  refuses a study made by a different sweep.
  """
  direction = 'minimize' if spec.direction == 'min' else 'maximize'
  try:
    study = optuna.create_study(storage=storage, study_name=name,
                                direction=direction, sampler=sampler,
                                pruner=pruner)
  except optuna.exceptions.DuplicatedStudyError:
    return _join(storage, name, fingerprint, sampler, pruner)
  for i, setting in enumerate(spec.settings):
    study.enqueue_trial(setting, user_attrs={'setting': i})
  study.set_user_attr('sweep', fingerprint)
  return study


def _join(storage, name, fingerprint, sampler, pruner):
  study = optuna.load_study(study_name=name, storage=storage,
                            sampler=sampler, pruner=pruner)
  deadline = time.time() + _READY_TIMEOUT_S
  while 'sweep' not in study.user_attrs:
    if time.time() > deadline:
      raise SpecError(f'study {name!r} exists but was never marked ready '
                      '(its creator died while enqueuing?)')
    time.sleep(0.5)
  if study.user_attrs['sweep'] != fingerprint:
    raise SpecError(f'study {name!r} was made by a different sweep (spec, '
                    'config or --config overrides); use another --workdir '
                    'or --study_name')
  return study


def suggest(trial, spec: SweepSpec) -> dict:
  """The trial's value of every swept field, through Optuna's suggest API
  (enqueued settings come back as fixed values)."""
  params = {}
  if spec.grid:
    for name, values in spec.grid.items():
      params[name] = trial.suggest_categorical(name, values)
    return params
  setting = trial.user_attrs.get('setting')
  names = list(spec.ranges)
  if setting is not None:
    names += [n for n in spec.settings[setting] if n not in names]
  for name in names:
    r = spec.ranges.get(name)
    if r is None:  # a settings-only field: the values the settings list
      choices = list(dict.fromkeys(s[name] for s in spec.settings
                                   if name in s))
      params[name] = trial.suggest_categorical(name, choices)
    elif r.kind == 'categorical':
      params[name] = trial.suggest_categorical(name, list(r.choices))
    elif r.kind == 'int':
      params[name] = trial.suggest_int(name, r.low, r.high)
    else:
      params[name] = trial.suggest_float(name, r.low, r.high,
                                         log=r.kind == 'loguniform')
  return params


# ---------------------------------------------------------------- budget --
def is_retry(trial) -> bool:
  return retry.retried_trial_number(trial) is not None


def counts_as_setting(trial) -> bool:
  return not is_retry(trial) and not trial.user_attrs.get('skipped')


def next_action(study, budget: int, heartbeat: bool) -> str:
  """'ask' (a queued retry or budget left), 'wait' (trials still running
  that may die and be retried: with heartbeats) or 'done'."""
  trials = study.get_trials(deepcopy=False)
  if any(t.state == TrialState.WAITING for t in trials):
    return 'ask'
  if sum(counts_as_setting(t) for t in trials) < budget:
    return 'ask'
  if heartbeat and any(t.state == TrialState.RUNNING
                                      for t in trials):
    return 'wait'
  return 'done'


def over_budget(study, trial, budget: int) -> bool:
  """True for a new setting asked after the budget was spent: two workers
  can both see one setting left and ask at the same moment."""
  if trial.user_attrs.get('workdir') or trial.user_attrs.get(
      'setting') is not None:
    return False  # a retry or an enqueued setting: always run
  earlier = [t for t in study.get_trials(deepcopy=False)
             if t.number < trial.number and counts_as_setting(t)]
  return len(earlier) >= budget


def chains(study) -> list:
  """The trials of each setting, oldest first (the last one is its
  current state), in order of the setting's first trial."""
  out = {}
  for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
    if t.user_attrs.get('skipped') or 'workdir' not in t.user_attrs:
      continue
    out.setdefault(t.user_attrs['workdir'], []).append(t)
  return list(out.values())
