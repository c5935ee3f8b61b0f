"""The console's progress line: speed, tokens/s, MFU and time left.

Speed is measured over the steps since the last line, from the end of the
first step of a leg (which includes compilation) onwards. FLOPs per step
are the task's (`Task.train_flops`, as experiments/benchmark.py counts
them); MFU needs the device peak from `config.peak_flops_per_device` (0:
not shown, since the peak of a CPU is not knowable). A long run also
prints its time left a few steps after the start, before the first full
log window.
"""
import time

EARLY_STEPS = 5  # timed steps before the first estimate of the time left


class Progress:
  """Times the steps of one leg of a run."""

  def __init__(self, config, task, num_devices: int, start: int):
    shape = task.step_shape(config)
    self.total = config.num_train_steps
    self.tokens_per_step = config.batch_size * shape.tokens
    self.flops_per_step = task.train_flops(task.model_config, config,
                                           config.batch_size)
    self.peak = config.peak_flops_per_device * num_devices
    # An early estimate only where the first log line is still far off.
    self.early = config.log_every > 2 * EARLY_STEPS
    self.first_step = start + 1  # ends with compilation: timing starts here
    self._mark_time, self._mark_step = time.time(), start

  def step_done(self, done: int, wait):
    """Call after dispatching step `done`; `wait()` blocks until it ran.
    Returns True at the step that should print the early estimate."""
    if done == self.first_step:
      wait()
      self._mark_time, self._mark_step = time.time(), done
    elif (self.early and done == self.first_step + EARLY_STEPS and
          done < self.total):
      wait()
      return True
    return False

  def steps_per_second(self, done: int) -> float | None:
    """Mean speed since the last `restart`; None if nothing was timed."""
    seconds = time.time() - self._mark_time
    if done <= self._mark_step or seconds <= 0:
      return None
    return (done - self._mark_step) / seconds

  def restart(self, done: int):
    self._mark_time, self._mark_step = time.time(), done

  def describe(self, done: int) -> str:
    """'12.3 steps/s | 45,678 tokens/s | MFU 31.2% | 00:10:00 left'."""
    seconds = time.time() - self._mark_time
    steps = done - self._mark_step
    if self._mark_step < self.first_step:  # the window holds compilation
      return f'{steps} step(s) in {seconds:.1f} s with compilation'
    steps_per_s = steps / max(seconds, 1e-9)
    parts = [f'{steps_per_s:.2f} steps/s',
             f'{steps_per_s * self.tokens_per_step:,.0f} tokens/s']
    if self.peak > 0:
      parts.append(f'MFU {steps_per_s * self.flops_per_step / self.peak:.1%}')
    parts.append(f'{_duration((self.total - done) / steps_per_s)} left')
    return ' | '.join(parts)


def _duration(seconds: float) -> str:
  """'01:02:03', or '3d 01:02:03' beyond a day."""
  days, rest = divmod(int(seconds), 86400)
  clock = time.strftime('%H:%M:%S', time.gmtime(rest))
  return f'{days}d {clock}' if days else clock
