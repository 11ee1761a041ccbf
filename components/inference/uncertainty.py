"""What to label next: unlabeled images ranked by how unsure the model is about them.

Uncertainty sampling (active learning's simplest strong baseline): the images whose
predicted probabilities are closest to a tie (margin) or most spread out (entropy) are
the ones whose labels teach the model most. Both scores are in 0..1, 1 = most unsure.
"""

import csv
import os
from typing import IO, List, Sequence, Tuple

import numpy as np

METHODS = ('margin', 'entropy')
RANK_FILE = 'uncertain.csv'
COLUMNS = ('rank', 'path', 'uncertainty', 'predicted', 'probability', 'runner_up',
           'runner_up_probability')


def uncertainty(probabilities, method: str = 'margin') -> np.ndarray:
  """[N, classes] probabilities -> [N] scores. margin: 1 - (top - second);
  entropy: the entropy divided by log(classes)."""
  p = np.atleast_2d(np.asarray(probabilities, np.float64))
  if method == 'margin':
    top_two = np.sort(p, axis=1)[:, -2:]
    return 1.0 - (top_two[:, 1] - top_two[:, 0])
  if method == 'entropy':
    terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=1) / np.log(p.shape[1])
  raise ValueError(f'Unknown uncertainty {method!r}: expected {" or ".join(METHODS)}.')


def write_ranking(out: IO[str], rows: Sequence[Tuple[str, Sequence[float]]],
                  class_names: Sequence[str], method: str = 'margin') -> int:
  """Writes the CSV, most uncertain first (ties by path); returns the number of rows.
  `rows`: (path, probabilities) of each classified image."""
  writer = csv.writer(out)
  writer.writerow(COLUMNS)
  if not rows:
    return 0
  probabilities = np.asarray([p for _, p in rows], np.float64)
  scores = uncertainty(probabilities, method)
  order = sorted(range(len(rows)), key=lambda i: (-scores[i], rows[i][0]))
  for rank, i in enumerate(order, 1):
    best, second = np.argsort(-probabilities[i], kind='stable')[:2]
    writer.writerow([rank, rows[i][0], f'{scores[i]:.6f}', class_names[best],
                     f'{probabilities[i][best]:.6g}', class_names[second],
                     f'{probabilities[i][second]:.6g}'])
  return len(rows)


class RecordingWriter:
  """A PredictionWriter that also keeps (path, probabilities) of each classified file."""

  def __init__(self, writer):
    self._writer = writer
    self.rows: List[Tuple[str, List[float]]] = []

  def predicted(self, path: str, probabilities: Sequence[float]) -> str:
    self.rows.append((path, list(map(float, probabilities))))
    return self._writer.predicted(path, probabilities)

  def __getattr__(self, name):  # skipped, flush, class_names: the wrapped writer's
    return getattr(self._writer, name)


def check_ranking_output(path, method: str):
  """The ranking file to write (None: no ranking); ValueError for a bad name or method."""
  if method not in METHODS:
    raise ValueError(f'--uncertainty: expected {" or ".join(METHODS)}, got {method!r}.')
  if path and not path.lower().endswith('.csv'):
    raise ValueError(f'--rank-uncertain {path}: expected a .csv file name.')
  if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
    raise ValueError(f'--rank-uncertain: folder {os.path.dirname(os.path.abspath(path))} '
                     'does not exist.')
  return path or None


def write_ranking_file(path: str, rows, class_names: Sequence[str], method: str) -> int:
  with open(path, 'w', newline='', encoding='utf-8') as out:
    return write_ranking(out, rows, class_names, method)
