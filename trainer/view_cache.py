"""Augmented views through the feature cache.

With the backbone frozen, augmentation only changes the backbone's input, so the
features of K augmented views of every training image can be computed once and the
head trained on them: epoch e reads view e mod K, one view per image. With K >=
epochs every epoch sees a fresh augmentation, as when the full model runs every
epoch; with fewer views they repeat.

`write_views` makes one pass over the training pixels and streams each view's
features to its own TFRecord file (nothing is held in memory); `epoch_batches`
reads them back, shuffled within each epoch. View k of an image is
`augment.augment(pixels, key, k, seed)`: seeded per (image, view), so the cache
is the same in every run.
"""

import dataclasses
import functools
import math
import os
from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from trainer import augment

# Examples held by the per-epoch shuffle (serialized features: ~150 KB each at 150 px).
SHUFFLE_BUFFER = 256
_FEATURES, _LABEL = 'features', 'label'


@dataclasses.dataclass(frozen=True)
class ViewCache:
  """Where the views are and what they hold."""
  files: Tuple[str, ...]        # one TFRecord file per view, in view order
  examples: int                 # training examples per view
  feature_shape: Tuple[int, ...]
  dtype: tf.DType               # how features are stored (float32 or bfloat16)

  @property
  def views(self) -> int:
    return len(self.files)


def _serialize(features: np.ndarray, label: np.ndarray) -> bytes:
  return tf.train.Example(features=tf.train.Features(feature={
      _FEATURES: tf.train.Feature(bytes_list=tf.train.BytesList(value=[features.tobytes()])),
      _LABEL: tf.train.Feature(float_list=tf.train.FloatList(value=label.reshape(-1))),
  })).SerializeToString(deterministic=True)


def view_features_fn(extractor: keras.Model, seed: int,
                     dtype: tf.DType = tf.float32) -> Callable[..., tf.Tensor]:
  """(pixels, keys, view) -> features of that view of each image, stored `dtype`."""
  @tf.function
  def features(pixels, keys, view):
    views = augment.augment(pixels, keys, view, seed)
    return tf.cast(extractor(views, training=False), dtype)
  return features


def write_views(pixel_batches: tf.data.Dataset, extractor: keras.Model, views: int,
                cache_dir: str, seed: int, dtype: tf.DType = tf.float32,
                progress: Optional[Callable[[int], None]] = None) -> ViewCache:
  """One pass over (pixels, label, key) batches; writes `views` feature files.

  `progress(examples_done)` is called after each batch.
  """
  tf.io.gfile.makedirs(cache_dir)
  files = tuple(os.path.join(cache_dir, f'view-{k}.tfrecord') for k in range(views))
  compute = view_features_fn(extractor, seed, dtype)
  writers = [tf.io.TFRecordWriter(path) for path in files]
  examples, shape = 0, None
  try:
    for pixels, labels, keys in pixel_batches:
      labels = labels.numpy()
      for view, writer in enumerate(writers):
        features = compute(pixels, keys, tf.constant(view, tf.int64)).numpy()
        shape = features.shape[1:]
        for one, label in zip(features, labels):
          writer.write(_serialize(one, label))
      examples += len(labels)
      if progress:
        progress(examples)
  finally:
    for writer in writers:
      writer.close()
  if not examples:
    raise ValueError('The training split is empty: no features to cache.')
  return ViewCache(files, examples, tuple(shape), dtype)


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


def epoch_batches(cache: ViewCache, epochs: int, batch_size: int, seed: int,
                  initial_epoch: int = 0) -> tf.data.Dataset:
  """(float32 features, label) batches for `epochs` epochs in one stream: epoch e
  is view e mod K, every example once, shuffled (seeded per epoch).
  Fit with `steps_per_epoch(cache, batch_size)` so that epochs and views line up."""
  def one_epoch(epoch: int) -> tf.data.Dataset:
    return (tf.data.TFRecordDataset(cache.files[epoch % cache.views])
            .shuffle(SHUFFLE_BUFFER, seed=seed * 1_000_003 + epoch)
            .batch(batch_size))

  stream = functools.reduce(tf.data.Dataset.concatenate,
                            [one_epoch(e) for e in range(initial_epoch, epochs)])
  return (stream.map(_parser(cache), num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))
