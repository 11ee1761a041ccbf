"""Will the feature cache fit? Its size, estimated before the feature pass, against the
free space where it is written.

    bytes = K x N_train x record(train) + N_eval x record(eval)
    record = prod(feature shape) x (2 bytes bfloat16 | 4 bytes float32) + ~65 bytes

K = min(training.augmented_views, training.epochs) with augmentation (else 1), the
training features in `model.feature_precision`, the eval features in float32.
"""

import dataclasses
import logging
import os
import shutil
from typing import Callable, Iterator, Optional, Sequence

import tensorflow as tf


class CacheSpaceError(RuntimeError):
  """The feature cache would not fit on its disk; raised before the feature pass."""


@dataclasses.dataclass(frozen=True)
class CacheEstimate:
  views: int
  train_examples: int
  train_record_bytes: int
  eval_examples: int
  eval_record_bytes: int

  @property
  def total_bytes(self) -> int:
    return (self.views * self.train_examples * self.train_record_bytes
            + self.eval_examples * self.eval_record_bytes)

  def describe(self) -> str:
    train = (f'{self.views} view{"s" if self.views != 1 else ""} x {self.train_examples:,} '
             f'train images x {human_bytes(self.train_record_bytes)}')
    if not self.eval_examples:
      return train
    return f'{train} + {self.eval_examples:,} eval images x {human_bytes(self.eval_record_bytes)}'


def human_bytes(n: float) -> str:
  for unit in ('B', 'KB', 'MB', 'GB'):
    if n < 1000:
      return f'{n:.3g} {unit}'
    n /= 1000
  return f'{n:.3g} TB'


def record_files(patterns: Sequence[str]) -> Iterator[tf.data.Dataset]:
  """One dataset per TFRecord file of `patterns`, in name order, GZIP where named .gz."""
  for pattern in patterns:
    for path in sorted(tf.io.gfile.glob(pattern)):
      yield tf.data.TFRecordDataset(path, 'GZIP' if path.endswith('.gz') else '')


def count_records(patterns: Sequence[str]) -> int:
  """Records in the TFRecord files of `patterns`: one read of the split, cheap next to
  the backbone pass over it."""
  return sum(int(records.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
             for records in record_files(patterns))


def is_remote(path: str) -> bool:
  return '://' in path


def free_bytes(path: str) -> int:
  """Free bytes on the local disk holding `path` (or its nearest existing parent)."""
  path = os.path.abspath(path)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  return shutil.disk_usage(path).free


def check_fits(estimate: CacheEstimate, cache_dir: str, shrink_hint: str,
               free: Optional[Callable[[str], int]] = None) -> None:
  """Raises CacheSpaceError in one line when the cache would not fit; logs the size."""
  needed = estimate.total_bytes
  if is_remote(cache_dir):
    logging.info('Feature cache: %s (%s) at %s; free space not checked on a remote '
                 'file system.', human_bytes(needed), estimate.describe(), cache_dir)
    return
  available = (free or free_bytes)(cache_dir)
  logging.info('Feature cache: %s (%s), %s free at %s.', human_bytes(needed),
               estimate.describe(), human_bytes(available), cache_dir)
  if needed > available:
    raise CacheSpaceError(
        f'The feature cache needs {human_bytes(needed)} ({estimate.describe()}) but '
        f'{cache_dir} has {human_bytes(available)} free: {shrink_hint}.')
