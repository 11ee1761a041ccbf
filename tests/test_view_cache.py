"""Augmented views through the feature cache: view k holds the backbone's output on the
k-th augmentation of each image, each epoch reads one view of every image, class-mixed."""

import os

import numpy as np
import pytest
import tensorflow as tf

from pipeline.configs import ModelConfig
from trainer import augment, model as model_lib, task, view_cache
from trainer.preprocessing import pixels_to_bytes

CONFIG = ModelConfig(weights='none', image_size=75, cut_layer='mixed0')
SEED = 7
N, PER_CLASS, BATCH = 10, 5, 4   # ids 0-4 are class 0, ids 5-9 class 1 (class-sorted input)


@pytest.fixture(scope='module')
def extractor():
  return model_lib.feature_extractor(model_lib.build_backbone(CONFIG))


@pytest.fixture(scope='module')
def images():
  """(float pixels, an id per image stored as its label, image keys): what
  `input_fn(keep_keys=True)` yields."""
  pixels = np.random.default_rng(0).integers(0, 256, (N, 75, 75, 3), dtype=np.uint8)
  keys = augment.image_keys(pixels_to_bytes(tf.constant(pixels)))
  return pixels.astype(np.float32), np.arange(N, dtype=np.float32).reshape(-1, 1), keys


def _pixel_batches(images):
  return tf.data.Dataset.from_tensor_slices(images).batch(BATCH)


def _write(tmp_path, extractor, images, views, dtype=tf.float32):
  return view_cache.write_views(_pixel_batches(images), extractor, views, str(tmp_path), SEED,
                                dtype=dtype)


def _epochs(cache, epochs):
  """Per epoch: {image id: features}, and the batches' ids."""
  steps = view_cache.steps_per_epoch(cache, BATCH)
  batches = list(view_cache.epoch_batches(cache, epochs, BATCH, SEED))
  assert len(batches) == epochs * steps
  result = []
  for epoch in range(epochs):
    chunk = batches[epoch * steps:(epoch + 1) * steps]
    ids = [[int(i) for i in y.numpy().ravel()] for _, y in chunk]
    features = {i: f for x, y in chunk for i, f in zip(y.numpy().ravel().astype(int), x.numpy())}
    result.append((features, ids))
  return result


def test_view_k_is_the_backbone_on_the_kth_augmentation(tmp_path, extractor, images):
  pixels, _, keys = images
  cache = _write(tmp_path, extractor, images, views=3)
  assert cache.views == 3 and cache.examples == N
  (epoch_features, _), = _epochs(cache, 1)  # epoch 0 reads view 0
  for view in range(3):
    stored = {int(i): f for x, y in view_cache.epoch_batches(
        cache, view + 1, BATCH, SEED, initial_epoch=view) for i, f in zip(y.numpy().ravel(), x)}
    expected = extractor(augment.augment(pixels, keys, view, SEED), training=False).numpy()
    for i in range(N):
      np.testing.assert_allclose(stored[i], expected[i], atol=1e-3 * np.abs(expected).max())
  plain = extractor(pixels, training=False).numpy()
  assert np.abs(epoch_features[0] - plain[0]).max() > 0.1 * np.abs(plain).max()


def test_each_epoch_reads_one_view_of_every_image_class_mixed(tmp_path, extractor, images):
  cache = _write(tmp_path, extractor, images, views=2)
  views = [_epochs(cache, 1)[0][0], _epochs(cache.view(1), 1)[0][0]]
  assert not np.allclose(views[0][3], views[1][3])  # two views differ
  epochs = _epochs(cache, 5)
  orders = []
  for epoch, (features, ids) in enumerate(epochs):
    flat = [i for batch in ids for i in batch]
    assert sorted(flat) == list(range(N))  # every image exactly once
    for i in range(N):  # view epoch mod K
      np.testing.assert_array_equal(features[i], views[epoch % 2][i])
    assert any(min(b) < PER_CLASS <= max(b) for b in ids), f'epoch {epoch}: {ids}'
    orders.append(flat)
  assert len({tuple(o) for o in orders}) > 1  # reshuffled per epoch


def test_views_are_reproducible_and_stored_compactly_in_bfloat16(tmp_path, extractor, images):
  first = _write(tmp_path / 'a', extractor, images, views=2)
  again = _write(tmp_path / 'b', extractor, images, views=2)
  assert [os.path.basename(f) for f in first.files] == [
      os.path.basename(f) for f in again.files]
  for a, b in zip(first.files, again.files):
    assert open(a, 'rb').read() == open(b, 'rb').read()
  compact = _write(tmp_path / 'c', extractor, images, views=1, dtype=tf.bfloat16)
  full, = _epochs(first.view(0), 1)
  half, = _epochs(compact, 1)
  scale = np.abs(full[0][0]).max()
  for i in range(N):  # bfloat16 keeps 8 bits of mantissa: relative error <= 2^-8
    assert half[0][i].dtype == np.float32
    np.testing.assert_allclose(half[0][i], full[0][i], rtol=2**-8, atol=1e-6 * scale)
  size = lambda files: sum(os.path.getsize(f) for f in files)
  assert size(compact.files) < 0.6 * size(first.shards[0])
  assert size(compact.files) == N * view_cache.record_bytes(compact.feature_shape, tf.bfloat16)


def test_the_feature_pass_of_the_view_cache_shows_one_progress_line(tmp_path, extractor, images):
  """As the eval pass does: progress on the console, ending with a summary line."""
  import io  # pylint: disable=g-import-not-at-top
  import console  # pylint: disable=g-import-not-at-top
  from pipeline.configs import TrainingConfig  # pylint: disable=g-import-not-at-top
  from trainer import task  # pylint: disable=g-import-not-at-top
  stream = io.StringIO()
  with console.writing_to(stream):
    _, steps = task.cached_views(_pixel_batches(images), extractor, str(tmp_path),
                                 TrainingConfig(epochs=3, augmented_views=2, batch_size=BATCH))
  assert steps == 3
  label = 'Feature pass (train, 2 augmented views): '
  lines = stream.getvalue().splitlines()  # plain lines every 10 s on a slow machine, then
  assert lines and all(line.startswith(label) for line in lines), lines  # the summary
  assert lines[-1].startswith(f'{label}{N} images in '), lines


def _identity_cache(tmp_path, n, shuffle_bytes, views, in_order=False):
  """n examples whose one feature and label are their id, cached in shards of a size
  that a `shuffle_bytes` buffer makes (tiny records: fast at 20,000)."""
  import tf_keras as keras  # pylint: disable=g-import-not-at-top
  ids = np.arange(n, dtype=np.float32).reshape(-1, 1)
  inputs = keras.Input((1,))
  identity = keras.Model(inputs, keras.layers.Identity()(inputs))
  batches = tf.data.Dataset.from_tensor_slices((ids, ids)).batch(1000)
  return view_cache.write_views(batches, identity, views, str(tmp_path), SEED, augmented=False,
                                shuffle_bytes=shuffle_bytes, in_order=in_order)


def _positions(cache, epoch, batch=500):
  """Where each example comes in epoch `epoch`, checking it comes exactly once."""
  order = np.concatenate([y.numpy().ravel() for _, y in view_cache.epoch_batches(
      cache, epoch + 1, batch, SEED, initial_epoch=epoch)]).astype(int)
  np.testing.assert_array_equal(np.sort(order), np.arange(cache.examples))
  position = np.empty(cache.examples)
  position[order] = np.arange(cache.examples)
  return position


def test_every_epoch_is_a_new_order_at_20000_examples(tmp_path):
  """Each view laid out in its own random shard order, shards read in a per-epoch
  order, interleaved, through a bounded buffer: two epochs' orders are uncorrelated,
  and each reads every example exactly once."""
  n = 20_000
  cache = _identity_cache(tmp_path, n, shuffle_bytes=1000 * view_cache.record_bytes(
      (1,), tf.float32), views=3)
  assert cache.shuffle_buffer == 1000 and len(cache.shards[0]) > 100
  positions = [_positions(cache, epoch) for epoch in range(4)]  # views 0, 1, 2, 0
  for a, b in ((0, 1), (1, 2), (0, 2)):  # different views: as two random permutations
    assert abs(np.corrcoef(positions[a], positions[b])[0, 1]) < 0.03
  # Re-reading view 0 (epoch 3): the shard order and the buffer change, ~1/sqrt(shards).
  assert abs(np.corrcoef(positions[0], positions[3])[0, 1]) < 0.1
  assert np.mean(np.abs(positions[0] - positions[3])) > n / 5
  # Each epoch mixes the whole set: its first tenth draws from every tenth of the input.
  assert len(set(np.argsort(positions[1])[:n // 10] // (n // 10))) == 10
  np.testing.assert_array_equal(positions[0], _positions(cache, 0))  # seeded


def _batch_of_each(cache, epoch, batch):
  where = np.empty(cache.examples, int)
  for i, (_, y) in enumerate(view_cache.epoch_batches(cache, epoch + 1, batch, SEED,
                                                       initial_epoch=epoch)):
    where[y.numpy().ravel().astype(int)] = i
  return where


def test_a_reread_view_mixes_its_batches_anew_when_shards_outgrow_the_buffer(tmp_path):
  """At 200,000 images a view's shards hold more examples than the buffer (1,562 vs
  890): at least MIN_INTERLEAVE shards are read at once, so two examples that shared a
  batch rarely share one again when the view is re-read."""
  n, batch = 20_000, 32
  cache = _identity_cache(tmp_path, n, shuffle_bytes=50 * view_cache.record_bytes(
      (1,), tf.float32), views=4)
  assert n // len(cache.shards[0]) > 2 * cache.shuffle_buffer  # 156 per shard vs 50
  first, again = _batch_of_each(cache, 0, batch), _batch_of_each(cache, 4, batch)  # view 0
  pairs = together = 0
  for b in range(first.max() + 1):
    members = again[first == b]
    together += (members[:, None] == members[None, :]).sum() - len(members)
    pairs += len(members) * (len(members) - 1)
  at_random = (batch - 1) / (n - 1)
  assert together / pairs < 8 * at_random  # one shard at a time: 80x


def test_the_plain_cache_reshuffles_on_every_pass_and_eval_keeps_its_order(tmp_path):
  n = 5_000
  cache = _identity_cache(tmp_path, n, shuffle_bytes=200 * view_cache.record_bytes(
      (1,), tf.float32), views=1)
  shuffled = view_cache.shuffled_batches(cache, 100, SEED)
  passes = [np.concatenate([y.numpy().ravel() for _, y in shuffled]) for _ in range(2)]
  for order in passes:
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
  assert abs(np.corrcoef(np.argsort(passes[0]), np.argsort(passes[1]))[0, 1]) < 0.2
  assert np.mean(passes[0] != passes[1]) > 0.99
  written = _identity_cache(tmp_path / 'eval', n, 10**6, views=1, in_order=True)
  assert len(written.files) == 1
  in_order = np.concatenate([y.numpy().ravel() for _, y in view_cache.in_order_batches(
      written, 100)])
  np.testing.assert_array_equal(in_order, np.arange(n))


def test_shards_are_bounded_by_open_files_and_by_examples_per_shard():
  assert view_cache.shards_per_view(1) == view_cache.MAX_OPEN_SHARDS
  assert view_cache.shards_per_view(4) == view_cache.MAX_OPEN_SHARDS // 4
  assert view_cache.shards_per_view(64) == 16
  assert view_cache.shards_per_view(4, examples=2000) == 2000 // view_cache.MIN_SHARD_EXAMPLES
  assert view_cache.shards_per_view(1, examples=10) == 1


def test_the_pixel_shuffle_holds_a_budget_of_bytes_whatever_the_examples_hold(tmp_path):
  """Transformed examples: raw RGB at the model's size; ExampleGen's (a training window):
  encoded images of any size, measured on a sample."""
  assert task.pixel_shuffle_buffer([], 150, raw_examples=False) == 3970
  assert task.pixel_shuffle_buffer([], 299, raw_examples=False) == 1000
  for name, size, count in (('a.gz', 1000, 100), ('b.gz', 5000, 300)):
    with tf.io.TFRecordWriter(str(tmp_path / name), 'GZIP') as writer:
      for _ in range(count):
        writer.write(b'x' * size)
  pattern = [str(tmp_path / '*.gz')]
  # The first 256 records: 100 of 1,000 bytes and 156 of 5,000.
  mean = (100 * 1000 + 156 * 5000) // 256
  assert task.mean_example_bytes(pattern) == mean
  assert task.pixel_shuffle_buffer(pattern, 150, True, budget=10**7) == 10**7 // mean
