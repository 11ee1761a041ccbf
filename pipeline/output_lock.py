"""One run at a time per output folder: an exclusive lock on `<output>/.lock`."""

import contextlib
import fcntl
import os
from typing import Dict, Iterator

from pipeline.configs import ConfigError

LOCK_FILE = '.lock'
_held: Dict[str, int] = {}  # lock files this process holds -> nesting depth


class OutputLockedError(RuntimeError):
  """Another run is writing to the same output folder."""


@contextlib.contextmanager
def output_lock(output: str) -> Iterator[None]:
  """Holds the lock for the block; refuses at once if another process holds it.

  The operating system releases a `flock` when its process ends, even on SIGKILL,
  so a killed run never leaves a stale lock behind. Re-entrant within a process: the
  CLI takes the lock before its heavy imports, the local runner takes it again.
  """
  path = os.path.realpath(os.path.join(output, LOCK_FILE))
  if path in _held:
    _held[path] += 1
    try:
      yield
    finally:
      _held[path] -= 1
    return
  try:
    os.makedirs(output, exist_ok=True)
    handle = open(path, 'a+')  # pylint: disable=consider-using-with
  except OSError as e:
    raise ConfigError(f'output: cannot write to {output}: {e.strerror}.') from e
  with handle:
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.seek(0)
      holder = handle.read().strip() or 'unknown'
      raise OutputLockedError(
          f'Another run (process {holder}) is using {output}; wait for it to finish or '
          'choose another output folder.') from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    _held[path] = 1
    try:
      yield
    finally:
      del _held[path]
      fcntl.flock(handle, fcntl.LOCK_UN)
