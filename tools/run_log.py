"""A run's log file: everything the libraries write goes there, the terminal stays readable.

Inside `capture`, the process's file descriptors 1 and 2 (and `sys.stdout`,
`sys.stderr`) point at the log file, so Python logging, warnings, prints,
TensorFlow's C++ messages and Beam's child processes all land in it, written
directly (nothing is lost when the process dies).
Lines meant for a person go to `console.out()`, which then points at the terminal;
`verbose` also echoes the log to the terminal as it grows.
"""

import contextlib
import dataclasses
import logging
import os
import sys
import threading
import time
from typing import Iterator, TextIO, Tuple

import console

LOG_FORMAT = '%(asctime)s %(levelname)s %(name)s: %(message)s'
FOLLOW_SECONDS = 0.2


def log_path(output: str) -> str:
  return os.path.join(output, 'logs', 'run.log')


@dataclasses.dataclass
class RunLog:
  path: str
  warnings: int = 0  # WARNING-or-worse records that passed the known-noise filters


class _WarningCounter(logging.Handler):

  def __init__(self, run_log: RunLog):
    super().__init__(logging.WARNING)
    self.run_log = run_log

  def emit(self, record: logging.LogRecord) -> None:
    self.run_log.warnings += 1


class _Follower(threading.Thread):
  """Copies what is appended to a file onto a stream until stopped (then drains it)."""

  def __init__(self, path: str, offset: int, stream: TextIO):
    super().__init__(daemon=True)
    self.path, self.offset, self.stream = path, offset, stream
    self.stopping = threading.Event()

  def run(self) -> None:
    with open(self.path, 'rb') as f:
      f.seek(self.offset)
      while True:
        stopping = self.stopping.is_set()
        chunk = f.read()
        if chunk:
          self.stream.write(chunk.decode('utf-8', 'replace'))
          self.stream.flush()
        elif stopping:
          return
        else:
          self.stopping.wait(FOLLOW_SECONDS)


@contextlib.contextmanager
def _python_logging(run_log: RunLog) -> Iterator[None]:
  """INFO and up from every library, timestamped, to stderr (the log); warnings counted."""
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  root = logging.getLogger()
  handler = logging.StreamHandler(sys.stderr)
  handler.setFormatter(logging.Formatter(LOG_FORMAT))
  counter = _WarningCounter(run_log)
  previous_level, previous_absl = root.level, absl_logging.get_verbosity()
  root.addHandler(handler)
  root.addHandler(counter)
  absl_logging.set_verbosity(absl_logging.INFO)
  root.setLevel(logging.INFO)
  logging.captureWarnings(True)
  try:
    yield
  finally:
    logging.captureWarnings(False)
    absl_logging.set_verbosity(previous_absl)
    root.setLevel(previous_level)
    root.removeHandler(counter)
    root.removeHandler(handler)


@contextlib.contextmanager
def _process_output_to(log: TextIO) -> Iterator[Tuple[TextIO, TextIO]]:
  """Points fds 1 and 2 and sys.stdout/sys.stderr at `log` for the block; yields
  line-buffered streams to where stdout and stderr pointed before (the terminal)."""
  sys.stdout.flush()
  sys.stderr.flush()
  saved = {fd: os.dup(fd) for fd in (1, 2)}
  terminal = (os.fdopen(os.dup(saved[1]), 'w', buffering=1),
              os.fdopen(os.dup(saved[2]), 'w', buffering=1))
  python_streams = sys.stdout, sys.stderr
  for fd in saved:
    os.dup2(log.fileno(), fd)
  sys.stdout = sys.stderr = log  # also when they had been replaced (pytest, notebooks)
  try:
    yield terminal
  finally:
    log.flush()
    sys.stdout, sys.stderr = python_streams
    for fd, original in saved.items():
      os.dup2(original, fd)
      os.close(original)
    for stream in terminal:
      stream.close()


@contextlib.contextmanager
def stderr_to(path: str) -> Iterator[None]:
  """Appends what the process writes to fd 2 (C++ libraries, Python warnings) to `path`
  for the block; stdout is left alone (it may carry a command's output)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  sys.stderr.flush()
  saved, python_stderr = os.dup(2), sys.stderr
  with open(path, 'a', buffering=1) as log:
    log.write(f'\n===== {time.strftime("%Y-%m-%d %H:%M:%S")} (process {os.getpid()}): '
              f'{" ".join(sys.argv)}\n')
    os.dup2(log.fileno(), 2)
    sys.stderr = log
    try:
      yield
    finally:
      log.flush()
      sys.stderr = python_stderr
      os.dup2(saved, 2)
      os.close(saved)


@contextlib.contextmanager
def capture(path: str, verbose: bool = False) -> Iterator[RunLog]:
  """Appends the process's output to `path` for the block; see the module docstring."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  run_log = RunLog(path)
  with open(path, 'a', buffering=1) as log, _process_output_to(log) as (terminal_out,
                                                                       terminal_err):
    log.write(f'\n===== {time.strftime("%Y-%m-%d %H:%M:%S")} started '
              f'(process {os.getpid()}): {" ".join(sys.argv)}\n')
    follower = _Follower(path, log.tell(), terminal_err) if verbose else None
    if follower:
      follower.start()
    try:
      with console.writing_to(terminal_out), _python_logging(run_log):
        yield run_log
    finally:
      if follower:
        log.flush()
        follower.stopping.set()
        follower.join()
