"""One trial: a `train.py` process in its own workdir, watched until it ends.

The sweep knows training only through its command line and its workdir:
`metrics.jsonl` (one JSON record per line; eval records every
config.eval_every steps) and train.py's exit code (training/exit_codes.py):
EXIT_OK finishes the trial, EXIT_STOPPED (after a checkpoint) interrupts
it, resumable; EXIT_ERROR and EXIT_DIVERGED, with their one-line
`error: ...` on stderr, and any other non-zero code fail it. A train.py
that predates EXIT_STOPPED dies of the signal itself; that counts as
interrupted too.
"""
import contextlib
import dataclasses
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

from training import exit_codes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_POLL_S = 0.5
_STOP_GRACE_S = 120  # for the checkpoint a stopped trial writes


@dataclasses.dataclass
class Outcome:
  state: str     # 'complete', 'failed', 'pruned' or 'interrupted'
  values: dict   # step -> objective, every eval in metrics.jsonl
  step: int      # the last step in metrics.jsonl
  reason: str    # why it failed or stopped

  @property
  def value(self) -> float | None:
    """The objective at the last eval."""
    return self.values[max(self.values)] if self.values else None


def flag_value(value) -> str:
  """A config value as config_flags parses it back."""
  if isinstance(value, bool):
    return 'true' if value else 'false'
  return repr(value) if isinstance(value, float) else str(value)


def train_command(config: str, workdir: str, overrides: dict) -> list:
  """`python train.py --config=... --workdir=... --config.<field>=<value>`;
  later overrides win."""
  return [sys.executable, os.path.join(REPO, 'train.py'), f'--config={config}',
          f'--workdir={workdir}'] + [
              f'--config.{name}={flag_value(value)}'
              for name, value in overrides.items()]


class MetricsFollower:
  """Reads the records appended to a metrics.jsonl since the last call.

  A resumed train.py first rewrites the file without the records after its
  checkpoint (a new file, renamed over the old one), so an offset into the
  old file means nothing: on a new inode, or a file shorter than the
  offset, it reads again from the start (report() ignores steps it has
  already seen)."""

  def __init__(self, path: str):
    self.path, self.offset, self.inode = path, 0, None

  def new_records(self) -> list:
    try:
      with open(self.path, 'rb') as f:
        stat = os.fstat(f.fileno())
        if stat.st_ino != self.inode or stat.st_size < self.offset:
          self.inode, self.offset = stat.st_ino, 0
        f.seek(self.offset)
        data = f.read()
    except FileNotFoundError:
      return []
    end = data.rfind(b'\n') + 1  # a line being written waits for next time
    self.offset += end
    return [json.loads(line) for line in data[:end].splitlines()
            if line.strip()]


def run_trial(command: list, workdir: str, objective: str, *, env: dict,
              cpus: tuple, report, stop_event) -> Outcome:
  """Runs `command` to its end and classifies how it ended.

  report(step, value) -> True when the trial should be pruned; it gets
  every eval record of the objective (the whole history after a resume).
  On prune or `stop_event` the process gets SIGTERM, and SIGKILL if it has
  not stopped after _STOP_GRACE_S.
  """
  os.makedirs(workdir, exist_ok=True)
  stderr_path = os.path.join(workdir, 'stderr.log')
  stderr_start = os.path.getsize(stderr_path) if os.path.exists(
      stderr_path) else 0
  follower = MetricsFollower(os.path.join(workdir, 'metrics.jsonl'))
  values, steps = {}, [0]
  with open(os.path.join(workdir, 'train.log'), 'ab') as out, \
      open(stderr_path, 'ab') as err, _workdir_lock(workdir) as lock:
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out,
                               stderr=err, stdin=subprocess.DEVNULL,
                               pass_fds=(lock.fileno(),))
    lock.write(str(process.pid))
    lock.flush()
    if cpus:  # before the interpreter starts threads, so all inherit it
      os.sched_setaffinity(process.pid, cpus)
    stopped_by_us, why, deadline = None, '', None
    while True:
      code = process.poll()
      for record in follower.new_records():
        steps.append(int(record.get('step', 0)))
        if objective in record and code is None and not stopped_by_us:
          values[record['step']] = float(record[objective])
          if report(record['step'], values[record['step']]):
            stopped_by_us, why = 'pruned', f'pruned at step {record["step"]}'
        elif objective in record:
          values[record['step']] = float(record[objective])
      if code is not None:
        break
      if stop_event.is_set() and not stopped_by_us:
        stopped_by_us, why = 'interrupted', 'the sweep was stopped'
      if stopped_by_us and deadline is None:
        process.send_signal(signal.SIGTERM)
        deadline = time.time() + _STOP_GRACE_S
      if deadline and time.time() > deadline:
        process.kill()
      time.sleep(_POLL_S)
  if stop_event.is_set() and code != 0 and stopped_by_us != 'pruned':
    # Ctrl-C reaches the trial too, which may die of it before we look.
    stopped_by_us, why = 'interrupted', 'the sweep was stopped'
  return _outcome(code, stopped_by_us, why, values, max(steps),
                  _error_line(stderr_path, stderr_start))


@contextlib.contextmanager
def _workdir_lock(workdir: str):
  """An flock on the trial's workdir that its train.py inherits, so the
  lock lives as long as that process does. A sweep killed alone (kill -9)
  leaves its train.py running; the retry of that trial then finds the lock
  taken, stops the orphan (pid in the lock file) and waits for its
  checkpoint, instead of training beside it in the same workdir."""
  with open(os.path.join(workdir, 'train.lock'), 'a+', encoding='utf-8') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      pid = f.read().strip()
      print(f'{workdir}: train.py {pid} from an earlier sweep still runs '
            'there; stopping it', flush=True)
      _signal(pid, signal.SIGTERM)
      deadline = time.time() + _STOP_GRACE_S
      while not _try_lock(f):
        if time.time() > deadline:
          _signal(pid, signal.SIGKILL)
        time.sleep(_POLL_S)
    f.seek(0)
    f.truncate()
    yield f


def _signal(pid: str, signum):
  try:
    os.kill(int(pid), signum)
  except (ValueError, ProcessLookupError):
    pass  # gone, or no pid written yet: the lock frees itself


def _try_lock(f) -> bool:
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return True
  except BlockingIOError:
    return False


def _outcome(code, stopped_by_us, why, values, step, error) -> Outcome:
  outcome = Outcome('failed', values, step, '')
  if stopped_by_us:
    outcome.state, outcome.reason = stopped_by_us, why
  elif code == exit_codes.EXIT_OK:
    outcome.state = 'complete' if values else 'failed'
    outcome.reason = '' if values else 'finished without the objective metric'
  elif code in (exit_codes.EXIT_STOPPED, -signal.SIGTERM, -signal.SIGINT):
    outcome.state = 'interrupted'
    outcome.reason = f'stopped from outside (exit code {code})'
  elif code < 0:
    outcome.reason = f'killed by {signal.Signals(-code).name}'
  else:
    outcome.reason = error or f'exit code {code} with no error line'
  return outcome


def _error_line(path: str, start: int) -> str:
  """The last `error: ...` line this run wrote to stderr."""
  try:
    with open(path, 'rb') as f:
      f.seek(start)
      lines = f.read().decode('utf-8', 'replace').splitlines()
  except FileNotFoundError:
    return ''
  errors = [line.strip() for line in lines if line.startswith('error:')]
  return errors[-1] if errors else ''
