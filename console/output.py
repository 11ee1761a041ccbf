"""The stream for lines meant for a person: `sys.stdout` unless a caller redirects it.

`transfer-pipeline run` sends everything the libraries print to its log file and
points this stream at the terminal; elsewhere (Kubeflow, tests, scripts) it is
the process's standard output.
"""

import contextlib
import logging
import sys
from typing import Iterator, Optional, TextIO

_stream: Optional[TextIO] = None


def out() -> TextIO:
  """The current console stream."""
  return _stream if _stream is not None else sys.stdout


def say(line: str = '') -> None:
  """Writes one line to the console stream, at once."""
  stream = out()
  stream.write(line + '\n')
  stream.flush()


def warn(line: str) -> None:
  """A warning that changes what a result means: on the console as `warning: <line>`, and
  in the log (and its warning count) as a WARNING record."""
  say(f'warning: {line}')
  logging.getLogger('transfer_pipeline').warning(line)


@contextlib.contextmanager
def writing_to(stream: TextIO) -> Iterator[TextIO]:
  """Sends console lines to `stream` for the duration of the block."""
  global _stream
  previous, _stream = _stream, stream
  try:
    yield stream
  finally:
    _stream = previous
