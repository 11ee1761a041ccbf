"""The simplest progress output: a bar with images/s on a terminal, a plain line every
`every_s` seconds otherwise (logs). Meant to be swapped for the CLI's progress helper."""

import sys
import time
from typing import IO, Optional


class Progress:
  """`update(n)` after each batch, `close()` at the end."""

  def __init__(self, label: str, total: Optional[int] = None, stream: IO[str] = sys.stderr,
               every_s: float = 10.0, width: int = 30):
    self.label, self.total, self.stream = label, total, stream
    self.every_s, self.width = every_s, width
    self.done = 0
    self.start = self._last = time.monotonic()
    self.tty = stream.isatty()

  def rate(self) -> float:
    elapsed = time.monotonic() - self.start
    return self.done / elapsed if elapsed > 0 else 0.0

  def update(self, count: int) -> None:
    self.done += count
    now = time.monotonic()
    if self.tty:
      self.stream.write('\r' + self._bar())
      self.stream.flush()
    elif now - self._last >= self.every_s:
      self._last = now
      of = f'/{self.total}' if self.total else ''
      self.stream.write(f'{self.label}: {self.done}{of} files, {self.rate():.1f} images/s\n')
      self.stream.flush()

  def _bar(self) -> str:
    if self.total:
      filled = int(self.width * min(self.done / self.total, 1.0))
      bar = '#' * filled + '.' * (self.width - filled)
      return f'{self.label} [{bar}] {self.done}/{self.total} {self.rate():.1f} images/s'
    return f'{self.label}: {self.done} files, {self.rate():.1f} images/s'

  def close(self) -> None:
    if self.tty:
      self.stream.write('\n')
      self.stream.flush()
