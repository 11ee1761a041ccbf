"""Progress of a long step: a redrawn bar with a rate on a terminal, plain lines elsewhere.

    for path in progress(paths, total=len(paths), label='Ingest', unit='files'):
      ...

    with Progress(label='Feature pass', unit='images') as bar:
      for batch in batches:
        bar.update(len(batch))

On a terminal the bar is redrawn at most 10 times a second; when the stream is not a
terminal (CI, Kubeflow logs, a file) a plain line is written every `interval` seconds.
Both end with one summary line: count, seconds and rate.
"""

import time
from typing import Callable, Iterable, Iterator, Optional, TextIO, TypeVar

from console.output import out

T = TypeVar('T')
BAR_WIDTH = 24
REDRAW_SECONDS = 0.1
PLAIN_INTERVAL_SECONDS = 10.0


def _count(n: float) -> str:
  return f'{n:,.0f}'


class Progress:
  """Counts work done; shows it on `stream` (default: the console stream)."""

  def __init__(self, total: Optional[int] = None, label: str = '', unit: str = 'items',
               stream: Optional[TextIO] = None, interval: float = PLAIN_INTERVAL_SECONDS,
               clock: Callable[[], float] = time.monotonic):
    self.total, self.label, self.unit = total, label, unit
    self.done = 0
    self._stream = stream or out()
    self._tty = bool(getattr(self._stream, 'isatty', lambda: False)())
    self._interval = REDRAW_SECONDS if self._tty else interval
    self._clock = clock
    self._start = self._last_shown = clock()
    self._closed = False

  def update(self, n: int = 1) -> None:
    """Adds `n` units of work; redraws (or writes a line) when it is time to."""
    self.done += n
    now = self._clock()
    if now - self._last_shown >= self._interval:
      self._last_shown = now
      self._show(now)

  def close(self, summary: bool = True) -> None:
    """Writes the summary line (once); `summary=False` only clears a drawn bar (for a
    caller that prints its own summary)."""
    if self._closed:
      return
    self._closed = True
    if not summary:
      if self._tty:
        self._write('\r\x1b[K')
      return
    seconds = self._clock() - self._start
    line = (f'{self.label}: {_count(self.done)} {self.unit} in {seconds:.1f} s'
            f' ({self._rate(seconds)})')
    self._write(('\r' + line + '\x1b[K' if self._tty else line) + '\n')

  def __enter__(self) -> 'Progress':
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def _rate(self, seconds: float) -> str:
    return f'{self.done / seconds:,.1f} {self.unit}/s' if seconds > 0 else f'- {self.unit}/s'

  def _show(self, now: float) -> None:
    seconds = now - self._start
    done = _count(self.done) + (f'/{_count(self.total)}' if self.total else '')
    share = f' ({100 * self.done / self.total:.0f}%)' if self.total else ''
    if not self._tty:
      self._write(f'{self.label}: {done} {self.unit}{share}, {self._rate(seconds)}\n')
      return
    self._write(f'\r{self.label} {self._bar()} {done} {self.unit}, {self._rate(seconds)}'
                f'{self._eta(seconds)}\x1b[K')

  def _bar(self) -> str:
    if not self.total:
      return ''
    filled = min(BAR_WIDTH, int(BAR_WIDTH * self.done / self.total))
    return '[' + '#' * filled + '.' * (BAR_WIDTH - filled) + ']'

  def _eta(self, seconds: float) -> str:
    if not self.total or not self.done or self.done >= self.total:
      return ''
    return f', {seconds * (self.total - self.done) / self.done:.0f} s left'

  def _write(self, text: str) -> None:
    self._stream.write(text)
    self._stream.flush()


def progress(iterable: Iterable[T], total: Optional[int] = None, label: str = '',
             unit: str = 'items', **kwargs) -> Iterator[T]:
  """Yields the items of `iterable`, counting one unit each (see `Progress`)."""
  if total is None and hasattr(iterable, '__len__'):
    total = len(iterable)  # type: ignore[arg-type]
  with Progress(total=total, label=label, unit=unit, **kwargs) as bar:
    for item in iterable:
      yield item
      bar.update()
