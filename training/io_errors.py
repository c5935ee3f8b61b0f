"""Failed reads and writes of a run's workdir: which are the user's to fix
(a full disk, a denied write), and the one line that says so.

Any other OSError, or a checkpoint save that failed for another reason, is
not bad input and keeps its traceback.
"""
import errno
import shutil

from training import checkpointing

# OSErrors that say the workdir's disk or permissions, not the program,
# are at fault: the user's to fix, so reported in one line.
_FULL = (errno.ENOSPC, errno.EDQUOT)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def _error_chain(error: BaseException) -> list[BaseException]:
  chain, e = [], error
  while e is not None:
    chain.append(e)
    e = e.__cause__ or e.__context__
  return chain


def disk_full(error: BaseException) -> bool:
  return any(getattr(e, 'errno', None) in _FULL or
             'No space left on device' in str(e) for e in _error_chain(error))


def workdir_unusable(error: BaseException) -> bool:
  """Whether a failed read or write (or checkpoint save) came from a full
  disk or a denied write: bad input, unlike any other failure."""
  return disk_full(error) or any(getattr(e, 'errno', None) in _DENIED
                                 for e in _error_chain(error))


def io_error_line(workdir: str, error: BaseException) -> str:
  """One line for a failed read or write, with the free space when the
  disk is full (the case that used to print 349 lines)."""
  if disk_full(error):
    try:
      free = f'{shutil.disk_usage(workdir).free / 2**20:,.1f} MiB free'
    except OSError:
      free = 'free space unknown'
    return (f'--workdir={workdir} is out of space ({free}): '
            f'{checkpointing.first_line(error)}')
  if isinstance(error, OSError):
    return (f'{error.filename or workdir} cannot be read or written: '
            f'{error.strerror or error}')
  return str(error)
