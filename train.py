r"""Trains and evaluates any experiment of configs/ on all devices.

  python train.py --config=configs/default.py --workdir=/tmp/reverse \
      --config.model.num_layers=3

Running the same command again resumes from the newest checkpoint in the
workdir. Several hosts: start one process per host with
--coordinator_address, --num_processes and --process_id (jax.distributed).
The loop itself is training/loop.py.

Exit codes (training/exit_codes.py):
  0   finished (or the workdir was already trained to num_train_steps);
  1   bad input: one line `error: ...` on stderr (a traceback only with
      --show_traceback), and nothing in the workdir is changed or lost;
  3   diverged: `error: non-finite <quantity> at step N ...`; that update
      was not applied and no checkpoint holds it;
  75  stopped by SIGTERM or SIGINT after a durable checkpoint: the same
      command continues. A second signal ends the process at once.
Any other exception is a bug and prints its traceback.
"""
from absl import app
from absl import flags
import jax

from cli import command
from cli import flags as cli_flags
from training import loop
from training.exit_codes import EXIT_DIVERGED, EXIT_ERROR, EXIT_STOPPED

_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'host:port of process 0 (multi-host).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 1, 'Hosts in the run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', 0, 'This host, 0-based.')


def main(argv):
  command.start(argv)
  if _COORDINATOR.value:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                               _PROCESS_ID.value)
  if cli_flags.CONFIG.value is None or cli_flags.WORKDIR.value is None:
    raise app.UsageError('--config and --workdir are required')
  try:
    result = command.reporting_user_errors(lambda: loop.train_and_evaluate(
        cli_flags.CONFIG.value, cli_flags.WORKDIR.value))
  except loop.Diverged as e:
    command.exit_with(EXIT_DIVERGED, f'error: {e}')
  except KeyboardInterrupt:  # Ctrl-C before the handlers were installed
    command.exit_with(EXIT_ERROR, 'error: interrupted before training started')
  if result.stopped_by:
    command.exit_with(EXIT_STOPPED, f'stopped by {result.stopped_by} at step '
                      f'{int(result.state.step)}, checkpoint saved; run the '
                      'same command to continue')
  if result.eval_metrics:
    loop.log('final: ' + ', '.join(f'{k} {v:.4f}' for k, v in
                                   sorted(result.eval_metrics.items())))


if __name__ == '__main__':
  command.run(main)
