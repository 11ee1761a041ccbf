"""The seeded augmentation: a function of (seed, image, view) only, so augmented runs repeat."""

import types

import numpy as np
import tensorflow as tf

from pipeline.configs import TrainingConfig
from trainer import augment, task
from contract.features import IMAGE_KEY
from trainer.preprocessing import pixels_to_bytes

SEED = 7


def _images(n=6):
  pixels = np.random.default_rng(0).integers(0, 256, (n, 75, 75, 3), dtype=np.uint8)
  data = pixels_to_bytes(tf.constant(pixels))
  return pixels.astype(np.float32), data, augment.image_keys(data)


class _Accessor:
  """What `input_fn` needs of TFX's DataAccessor: transformed examples in batches."""

  def __init__(self, data, labels):
    self._data, self._labels = data, labels

  def tf_dataset_factory(self, files, options, schema):
    return tf.data.Dataset.from_tensor_slices(
        ({IMAGE_KEY: self._data}, self._labels)).batch(options.batch_size)


def test_augmentation_depends_only_on_seed_key_and_view():
  pixels, _, keys = _images()
  batch = augment.augment(pixels, keys, 1, SEED).numpy()
  alone = augment.augment(pixels[3:4], keys[3:4], 1, SEED).numpy()
  np.testing.assert_array_equal(batch[3:4], alone)  # not on batch composition
  assert batch.min() >= 0 and batch.max() <= 255
  for other in (augment.augment(pixels, keys, 2, SEED), augment.augment(pixels, keys, 1, SEED + 1)):
    assert np.abs(other.numpy() - batch).mean() > 5
  draws = augment._uniform_draws(tf.range(2000, dtype=tf.int64), 0, SEED).numpy()
  assert 0.45 < (draws[:, 0] < 0.5).mean() < 0.55  # half of the images flipped
  assert np.all((draws >= 0) & (draws < 1))


def test_augmented_input_is_reproducible_and_new_each_epoch():
  pixels, data, _ = _images()
  labels = np.arange(len(pixels), dtype=np.int64)
  transform_output = types.SimpleNamespace(transformed_metadata=types.SimpleNamespace(schema=None))

  def epochs(count):
    dataset = task.input_fn([], _Accessor(data, labels), transform_output, 75,
                            TrainingConfig(batch_size=4, seed=SEED), shuffle=False, augment=True)
    return [np.concatenate([x.numpy() for x, _ in dataset]) for _ in range(count)]

  first, second = epochs(2), epochs(2)
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a, b)  # the same seed: the same augmentations
  assert np.abs(first[0] - first[1]).mean() > 5  # a new augmentation each epoch
  assert np.abs(first[0] - pixels).mean() > 5
