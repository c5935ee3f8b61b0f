"""One run per workdir: a lock file held for the whole run.

`workdir/run.lock` (`run.lock.<i>` for process i > 0 of a multi-host run)
holds `host pid` of its holder. The lock itself is an exclusive `flock` on
that file, which the kernel releases when the process dies, however it
dies; the text is only there to name the holder. So a second run refuses
in one line naming the first, and the lock of a killed run is simply taken
over, with a message naming the dead holder. On a file system without
`flock` the holder's PID is checked instead (on the same host only).
"""
import contextlib
import errno
import fcntl
import os
import socket

from errors import UserError

LOCK_NAME = 'run.lock'


class WorkdirLocked(UserError):
  """Another live process holds the workdir."""


@contextlib.contextmanager
def hold(workdir: str, process_index: int = 0, log=print):
  """Holds the workdir's lock for the `with` block, or raises WorkdirLocked.

  `log` receives one line when a dead holder's lock is taken over.
  """
  name = LOCK_NAME + (f'.{process_index}' if process_index else '')
  path = os.path.join(workdir, name)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  held = False
  try:
    previous = _read(fd)
    if not _try_flock(fd, previous):
      raise WorkdirLocked(
          f'{workdir} is in use by another run ({_read(fd) or previous} '
          f'holds {path}); wait for it to end or use another --workdir')
    held = True
    if previous:
      log(f'taking over {path}: its holder ({previous}) is no longer '
          'running')
    _write(fd, f'host {socket.gethostname()} pid {os.getpid()}')
    yield path
  finally:
    if held:
      _write(fd, '')  # released: the next run sees no previous holder
    os.close(fd)  # closing also drops the flock


def _try_flock(fd: int, previous: str) -> bool:
  """True if this process now holds the lock."""
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return True
  except OSError as e:
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      return False
    # No flock on this file system (some network or FUSE mounts): fall back
    # to asking whether the recorded holder still runs on this host.
    return not _alive(previous)


def _alive(holder: str) -> bool:
  """Whether 'host H pid P' names a live process; another host: assume so."""
  fields = holder.split()
  if len(fields) != 4:
    return False
  host, pid = fields[1], int(fields[3])
  if host != socket.gethostname():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _read(fd: int) -> str:
  os.lseek(fd, 0, os.SEEK_SET)
  return os.read(fd, 4096).decode('utf-8', 'replace').strip()


def _write(fd: int, text: str):
  os.ftruncate(fd, 0)
  os.pwrite(fd, (text + '\n' if text else '').encode('utf-8'), 0)
  os.fsync(fd)
