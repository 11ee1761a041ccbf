"""Augmented views through the feature cache.

With the backbone frozen, augmentation only changes the backbone's input, so the
features of K augmented views of every training image can be computed once and the
head trained on them: epoch e reads view e mod K, one view per image. With K >=
epochs every epoch sees a fresh augmentation, as when the full model runs every
epoch; with fewer views they repeat.

`write_views` makes one pass over the training pixels and streams each view's
features to TFRecord shards (nothing is held in memory), each example to a shard drawn
per (seed, view), so every view is laid out in its own random order; `epoch_batches`
reads them back with a real shuffle every epoch at any size: the shard order is
permuted per epoch (seeded by the epoch), the shards are read interleaved, as many at
once as the shuffle buffer of SHUFFLE_BUFFER_BYTES holds (at least MIN_INTERLEAVE), and
the buffer mixes them.
Epochs that read different views are as unrelated as two random permutations;
an epoch that re-reads a view (epochs > K, or the plain cache) differs from the last
read by the shard order and the buffer (order correlation ~ 1 / sqrt(shards)). View k of an image is
`augment.augment(pixels, key, k, seed)`: seeded per (image, view), so the cache
is the same in every run. The plain feature cache (no augmentation, one "view") and the
eval features are written the same way (`augmented=False`).
"""

import dataclasses
import functools
import math
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from trainer import augment

# Memory held by the per-epoch shuffle buffer (890 examples of 75 KB: bfloat16 mixed7
# features at 150 px).
SHUFFLE_BUFFER_BYTES = 64 * 2**20
# Shard files open at once while writing, over all views (each view gets at least 16).
MAX_OPEN_SHARDS = 512
MIN_INTERLEAVE, MAX_INTERLEAVE = 16, 64  # shards read at once
_RECORD_FRAMING = 16  # a TFRecord's uint64 length and two masked crc32c
_FEATURES, _LABEL = 'features', 'label'


@dataclasses.dataclass(frozen=True)
class ViewCache:
  """Where the views are and what they hold."""
  shards: Tuple[Tuple[str, ...], ...]  # per view (in view order), its shard files
  examples: int                        # training examples per view
  feature_shape: Tuple[int, ...]
  dtype: tf.DType                      # how features are stored (float32 or bfloat16)
  shuffle_buffer: int                  # examples held by the per-epoch shuffle

  @property
  def views(self) -> int:
    return len(self.shards)

  @property
  def files(self) -> Tuple[str, ...]:
    return tuple(path for view in self.shards for path in view)

  def view(self, k: int) -> 'ViewCache':
    """The cache of view k alone."""
    return dataclasses.replace(self, shards=(self.shards[k],))


def _serialize(features: np.ndarray, label: np.ndarray) -> bytes:
  return tf.train.Example(features=tf.train.Features(feature={
      _FEATURES: tf.train.Feature(bytes_list=tf.train.BytesList(value=[features.tobytes()])),
      _LABEL: tf.train.Feature(float_list=tf.train.FloatList(value=label.reshape(-1))),
  })).SerializeToString(deterministic=True)


def record_bytes(feature_shape: Sequence[int], dtype: tf.DType) -> int:
  """Disk bytes of one cached example (features, label, TFRecord framing): exact, since
  features are stored as raw bytes and the label as one packed float."""
  zeros = np.zeros(tuple(feature_shape), tf.as_dtype(dtype).as_numpy_dtype)
  return len(_serialize(zeros, np.zeros(1, np.float32))) + _RECORD_FRAMING


def shuffle_buffer(feature_shape: Sequence[int], dtype: tf.DType,
                   shuffle_bytes: int = SHUFFLE_BUFFER_BYTES) -> int:
  """Examples the per-epoch shuffle holds: as many as fill `shuffle_bytes`."""
  return max(1, shuffle_bytes // record_bytes(feature_shape, dtype))


# Fewer examples per shard cost more in file opens than they give in shuffling.
MIN_SHARD_EXAMPLES = 32


def shards_per_view(views: int, examples: Optional[int] = None) -> int:
  """MAX_OPEN_SHARDS over the views (at least 16), and with a known example count at most
  one shard per MIN_SHARD_EXAMPLES examples."""
  shards = max(16, MAX_OPEN_SHARDS // views)
  return shards if examples is None else max(1, min(shards, examples // MIN_SHARD_EXAMPLES))


class _ShardedWriter:
  """Streams each record to the shard `write` is given: `<prefix>-00000.tfrecord`, ...;
  files are opened on their first record (a small split makes fewer files)."""

  def __init__(self, prefix: str, shards: int):
    self._prefix, self._writers = prefix, [None] * shards

  def write(self, shard: int, record: bytes) -> None:
    if self._writers[shard] is None:
      self._writers[shard] = tf.io.TFRecordWriter(f'{self._prefix}-{shard:05d}.tfrecord')
    self._writers[shard].write(record)

  @property
  def files(self) -> Tuple[str, ...]:
    return tuple(f'{self._prefix}-{i:05d}.tfrecord' for i, w in enumerate(self._writers) if w)

  def close(self) -> None:
    for writer in self._writers:
      if writer is not None:
        writer.close()


def view_features_fn(extractor: keras.Model, seed: int,
                     dtype: tf.DType = tf.float32) -> Callable[..., tf.Tensor]:
  """(pixels, keys, view) -> features of that view of each image, stored `dtype`."""
  @tf.function
  def features(pixels, keys, view):
    views = augment.augment(pixels, keys, view, seed)
    return tf.cast(extractor(views, training=False), dtype)
  return features


def _plain_features_fn(extractor: keras.Model, dtype: tf.DType) -> Callable[..., tf.Tensor]:
  @tf.function
  def features(pixels, keys, view):  # pylint: disable=unused-argument
    return tf.cast(extractor(pixels, training=False), dtype)
  return features


def write_views(pixel_batches: tf.data.Dataset, extractor: keras.Model, views: int,
                cache_dir: str, seed: int, dtype: tf.DType = tf.float32,
                progress: Optional[Callable[[int], None]] = None, augmented: bool = True,
                shuffle_bytes: int = SHUFFLE_BUFFER_BYTES, in_order: bool = False,
                examples: Optional[int] = None) -> ViewCache:
  """One pass over (pixels, label, key) batches; writes `views` sharded feature files.

  `augmented=False`: (pixels, label) batches, one view of the images as they are (the
  plain feature cache and the eval features). `in_order`: one file per view in the order
  of the input (the eval features, read back by `in_order_batches`).
  `progress(examples_done)` is called after each batch.
  """
  tf.io.gfile.makedirs(cache_dir)
  shape = tuple(extractor.output_shape[1:])
  compute = (view_features_fn(extractor, seed, dtype) if augmented
             else _plain_features_fn(extractor, dtype))
  shards = 1 if in_order else shards_per_view(views, examples)
  writers = [_ShardedWriter(f'{cache_dir}/view-{k}', shards) for k in range(views)]
  written = 0
  try:
    for number, batch in enumerate(pixel_batches):
      pixels, labels = batch[0], batch[1].numpy()
      keys = batch[2] if augmented else tf.zeros([len(labels)], tf.int64)
      for view, writer in enumerate(writers):
        features = compute(pixels, keys, tf.constant(view, tf.int64)).numpy()
        places = np.random.default_rng([seed, view, number]).integers(shards, size=len(labels))
        for one, label, shard in zip(features, labels, places):
          writer.write(int(shard), _serialize(one, label))
      written += len(labels)
      if progress:
        progress(written)
  finally:
    for writer in writers:
      writer.close()
  if not written:
    raise ValueError('The training split is empty: no features to cache.')
  return ViewCache(tuple(w.files for w in writers), written, shape, dtype,
                   shuffle_buffer(shape, dtype, shuffle_bytes))


def _parser(cache: ViewCache) -> Callable[[tf.Tensor], Tuple[tf.Tensor, tf.Tensor]]:
  spec = {_FEATURES: tf.io.FixedLenFeature([], tf.string),
          _LABEL: tf.io.FixedLenFeature([1], tf.float32)}

  def parse(records):
    parsed = tf.io.parse_example(records, spec)
    features = tf.io.decode_raw(parsed[_FEATURES], cache.dtype)
    features = tf.reshape(features, (-1,) + cache.feature_shape)
    return tf.cast(features, tf.float32), parsed[_LABEL]
  return parse


def steps_per_epoch(cache: ViewCache, batch_size: int) -> int:
  return math.ceil(cache.examples / batch_size)


def _interleaved(files: tf.data.Dataset, cache: ViewCache) -> tf.data.Dataset:
  """The records of `files`, read as many at once as the shuffle buffer holds, and at
  least MIN_INTERLEAVE, so that a batch mixes shards even when one outgrows the buffer."""
  per_shard = max(1, cache.examples // len(cache.shards[0]))
  cycle = int(np.clip(cache.shuffle_buffer // per_shard, MIN_INTERLEAVE, MAX_INTERLEAVE))
  return files.interleave(tf.data.TFRecordDataset, cycle_length=cycle, block_length=1,
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _batched(records: tf.data.Dataset, cache: ViewCache, batch_size: int) -> tf.data.Dataset:
  return (records.batch(batch_size).map(_parser(cache), num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))


def epoch_order(files: Sequence[str], seed: int, epoch: int) -> List[str]:
  """The shards of one view in the order epoch `epoch` reads them (seeded per epoch)."""
  rng = np.random.default_rng([seed, epoch])
  return [files[i] for i in rng.permutation(len(files))]


def epoch_batches(cache: ViewCache, epochs: int, batch_size: int, seed: int,
                  initial_epoch: int = 0) -> tf.data.Dataset:
  """(float32 features, label) batches for `epochs` epochs in one stream: epoch e
  is view e mod K, every example once, shuffled (seeded per epoch).
  Fit with `steps_per_epoch(cache, batch_size)` so that epochs and views line up."""
  def one_epoch(epoch: int) -> tf.data.Dataset:
    files = tf.data.Dataset.from_tensor_slices(
        epoch_order(cache.shards[epoch % cache.views], seed, epoch))
    return (_interleaved(files, cache)
            .shuffle(cache.shuffle_buffer, seed=seed * 1_000_003 + epoch)
            .batch(batch_size))

  stream = functools.reduce(tf.data.Dataset.concatenate,
                            [one_epoch(e) for e in range(initial_epoch, epochs)])
  return (stream.map(_parser(cache), num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))


def shuffled_batches(cache: ViewCache, batch_size: int, seed: int) -> tf.data.Dataset:
  """View 0 in batches, reshuffled (shard order and buffer) every time it is iterated:
  for `fit` without `steps_per_epoch`, one iteration per epoch."""
  files = tf.data.Dataset.from_tensor_slices(list(cache.shards[0])).shuffle(
      len(cache.shards[0]), seed=seed, reshuffle_each_iteration=True)
  records = _interleaved(files, cache).shuffle(cache.shuffle_buffer, seed=seed,
                                        reshuffle_each_iteration=True)
  return _batched(records, cache, batch_size)


def in_order_batches(cache: ViewCache, batch_size: int) -> tf.data.Dataset:
  """View 0 in batches, in the order it was written (the eval features)."""
  return _batched(tf.data.TFRecordDataset(list(cache.shards[0])), cache, batch_size)
