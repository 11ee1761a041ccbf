"""Prediction rows as CSV or JSON Lines, written as they come.

One row per input file: `path`, `class_name` (the predicted class), one probability
column per class (named after the class), and `skipped` (why a file was not
classified; then the other columns are empty). `transfer-pipeline predict` and the
pipeline's batch inference both write this format.
"""

import csv
import json
import os
from typing import IO, List, Sequence

FORMATS = ('.csv', '.jsonl')


def display_path(path: str) -> str:
  """A path as UTF-8 text: undecodable bytes as \\xNN."""
  return os.fsencode(path).decode('utf-8', 'backslashreplace')


def format_of(path: str) -> str:
  """'.csv' or '.jsonl' from a file name; anything else is refused."""
  ext = os.path.splitext(path)[1].lower()
  if ext not in FORMATS:
    raise ValueError(f'Output {path}: expected a .csv or .jsonl file name.')
  return ext


class PredictionWriter:
  """Writes rows to an open text file; flushes after each batch (`flush`)."""

  def __init__(self, out: IO[str], class_names: Sequence[str], fmt: str = '.csv'):
    self.out = out
    self.class_names = list(class_names)
    self.fmt = fmt
    self._csv = csv.writer(out) if fmt == '.csv' else None
    if self._csv:
      self._csv.writerow(['path', 'class_name', *self.class_names, 'skipped'])

  def predicted(self, path: str, probabilities: Sequence[float]) -> str:
    """Writes one classified file; returns its predicted class name."""
    best = max(range(len(probabilities)), key=probabilities.__getitem__)
    name = self.class_names[best]
    if self._csv:
      self._csv.writerow([display_path(path), name, *(f'{p:.6g}' for p in probabilities), ''])
    else:
      self._json({'path': display_path(path), 'class_name': name,
                  'probabilities': dict(zip(self.class_names, map(float, probabilities)))})
    return name

  def skipped(self, path: str, reason: str) -> None:
    if self._csv:
      self._csv.writerow([display_path(path), '', *([''] * len(self.class_names)), reason])
    else:
      self._json({'path': display_path(path), 'skipped': reason})

  def _json(self, row: dict) -> None:
    self.out.write(json.dumps(row, ensure_ascii=False) + '\n')

  def flush(self) -> None:
    self.out.flush()


def read_rows(path: str) -> List[dict]:
  """Rows of a CSV or JSONL file written by PredictionWriter (for tests and scripts):
  {'path', 'class_name', 'probabilities': {class: p}} or {'path', 'skipped'}."""
  with open(path, newline='', encoding='utf-8') as f:
    if format_of(path) == '.jsonl':
      return [json.loads(line) for line in f if line.strip()]
    reader = csv.reader(f)
    header = next(reader)
    names = header[2:-1]
    rows = []
    for values in reader:
      row: dict = {'path': values[0]}
      if values[-1]:
        row['skipped'] = values[-1]
      else:
        row['class_name'] = values[1]
        row['probabilities'] = dict(zip(names, map(float, values[2:-1])))
      rows.append(row)
    return rows
