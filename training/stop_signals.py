"""Graceful stop on SIGTERM (what a cluster sends before preemption) and
SIGINT (Ctrl-C).

The first signal only sets a flag: train.py finishes the current step,
saves a checkpoint, waits until it is durable and exits with
exit_codes.EXIT_STOPPED (75). The handlers are then reset to the default,
so a second signal ends the process at once, even inside a long XLA call,
without a Python traceback; the newest durable checkpoint is still there.
"""
import signal
import sys
import threading

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
  """`with StopSignals() as stop:` ... `if stop.requested: ...`."""

  def __init__(self, log=None):
    self.received = None  # the name of the first signal, e.g. 'SIGTERM'
    self._log = log or (lambda line: print(line, file=sys.stderr,
                                           flush=True))
    self._previous = {}

  @property
  def requested(self) -> bool:
    return self.received is not None

  def __enter__(self):
    # Handlers can only be installed from the main thread; elsewhere (a
    # caller's worker thread) the run simply has no graceful stop.
    if threading.current_thread() is threading.main_thread():
      for signum in _SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    return False

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name
    for other in _SIGNALS:  # a second signal: the default, immediate exit
      signal.signal(other, signal.SIG_DFL)
    self._log(f'{self.received} received: stopping after this step with a '
              'checkpoint (signal again to exit at once)')
