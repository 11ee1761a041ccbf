"""The feature cache's size is estimated before the feature pass and checked against the
free space where it is written: a cache that would not fit is refused in one line."""

import logging
import os
import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from pipeline.configs import ModelConfig, TrainingConfig
from trainer import cache_space, model as model_lib, task, view_cache

SHAPE = (2, 2, 3)


def _identity_extractor():
  inputs = keras.Input(SHAPE)
  return keras.Model(inputs, keras.layers.Identity()(inputs))


def _write_split(path, n, compression='GZIP'):
  with tf.io.TFRecordWriter(path, options=compression) as writer:
    for i in range(n):
      writer.write(b'example %d' % i)


def test_the_estimate_is_the_size_the_cache_takes(tmp_path):
  n, views = 300, 3
  pixels = np.random.default_rng(0).uniform(0, 255, (n,) + SHAPE).astype(np.float32)
  labels = np.ones((n, 1), np.float32)
  keys = np.arange(n, dtype=np.int64)
  batches = tf.data.Dataset.from_tensor_slices((pixels, labels, keys)).batch(32)
  for dtype in (tf.float32, tf.bfloat16):
    cache = view_cache.write_views(batches, _identity_extractor(), views,
                                   str(tmp_path / dtype.name), seed=1, dtype=dtype,
                                   augmented=False)
    estimate = cache_space.CacheEstimate(views, n, view_cache.record_bytes(SHAPE, dtype), 0, 0)
    assert sum(os.path.getsize(f) for f in cache.files) == estimate.total_bytes
  # 12 values: 48 bytes in float32, 24 in bfloat16, plus the same proto and framing.
  assert (view_cache.record_bytes(SHAPE, tf.float32)
          - view_cache.record_bytes(SHAPE, tf.bfloat16)) == 24


def test_records_are_counted_in_compressed_and_plain_files(tmp_path):
  _write_split(str(tmp_path / 'a.gz'), 7)
  _write_split(str(tmp_path / 'b.gz'), 5)
  _write_split(str(tmp_path / 'c.tfrecord'), 4, compression='')
  assert cache_space.count_records([str(tmp_path / '*.gz')]) == 12
  assert cache_space.count_records([str(tmp_path / '*.gz'), str(tmp_path / 'c*')]) == 16


MIXED7_150PX = (7, 7, 768)


def test_a_cache_that_does_not_fit_is_refused_in_one_line_naming_what_shrinks_it():
  """The README's example: 80,000 + 20,000 images at 150 px, 4 views."""
  estimate = cache_space.CacheEstimate(
      4, 80_000, view_cache.record_bytes(MIXED7_150PX, tf.bfloat16),
      20_000, view_cache.record_bytes(MIXED7_150PX, tf.float32))
  hint = task.shrink_hint(ModelConfig(pooling='flatten'), TrainingConfig(epochs=20),
                          'bfloat16')
  with pytest.raises(cache_space.CacheSpaceError) as refused:
    cache_space.check_fits(estimate, '/data/run/feature_cache', hint,
                           free=lambda path: 10 * 10**9)
  assert str(refused.value) == (
      'The feature cache needs 27.1 GB (4 views x 80,000 train images x 75.3 KB + 20,000 '
      'eval images x 151 KB) but /data/run/feature_cache has 10 GB free: it shrinks with '
      'fewer views (training.augmented_views below 4), pooled features (model.pooling: '
      'average, one value per channel), or more free space.')
  float32_hint = task.shrink_hint(ModelConfig(), TrainingConfig(), 'float32')
  assert 'model.feature_precision: bfloat16' in float32_hint
  cache_space.check_fits(estimate, '/data', hint, free=lambda path: 28 * 10**9)  # fits


def test_the_hint_names_only_settings_that_would_change():
  hint = task.shrink_hint(ModelConfig(pooling='average'),
                          TrainingConfig(augment=False), 'bfloat16')
  assert 'augmented_views' not in hint and 'pooling' not in hint
  assert 'feature_precision' not in hint and 'more free space' in hint


def test_a_remote_cache_is_not_checked_and_says_so(caplog):
  estimate = cache_space.CacheEstimate(1, 10, 100, 10, 100)
  with caplog.at_level(logging.INFO):
    cache_space.check_fits(estimate, 'gs://bucket/run/feature_cache', 'hint',
                           free=lambda path: pytest.fail('free space asked for a remote path'))
  assert 'free space not checked on a remote file system' in caplog.text


def test_the_free_space_of_a_folder_not_made_yet_is_its_disk_s(tmp_path):
  assert cache_space.free_bytes(str(tmp_path / 'not' / 'yet')) > 0


class _NeverRead:
  def __iter__(self):
    raise AssertionError('the feature pass started')


def test_the_trainer_refuses_before_the_feature_pass(tmp_path, monkeypatch):
  """run_fn's phase one: the size check comes before any feature is computed."""
  config = ModelConfig(image_size=75, cut_layer='mixed0', weights='none')
  backbone = model_lib.build_backbone(config)
  head = model_lib.build_head(tuple(backbone.output_shape[1:]), 2, config)
  _write_split(str(tmp_path / 'train.gz'), 40)
  _write_split(str(tmp_path / 'eval.gz'), 10)
  fn_args = types.SimpleNamespace(train_files=[str(tmp_path / 'train*')],
                                  eval_files=[str(tmp_path / 'eval*')],
                                  model_run_dir=str(tmp_path / 'run'))
  monkeypatch.setattr(cache_space, 'free_bytes', lambda path: 10**6)
  never = _NeverRead()
  training = TrainingConfig(epochs=3, augmented_views=4)
  with pytest.raises(cache_space.CacheSpaceError,
                     match=r'needs 3.52 MB \(3 views x 40 train images x 25.2 KB \+ 10 eval '
                           r'images x 50.2 KB\) .* has 1 MB free: .*augmented_views below 3'):
    task._train_head(None, backbone, head, {'train': never, 'eval': never}, 2, training,  # pylint: disable=protected-access
                     fn_args, 'bfloat16', config)
  assert not os.path.exists(tmp_path / 'run' / 'feature_cache')


def test_average_pooling_caches_one_value_per_channel_and_trains_the_same_head():
  config = ModelConfig(image_size=75, cut_layer='mixed0', pooling='average', weights='none')
  backbone = model_lib.build_backbone(config)
  extractor = model_lib.feature_extractor(backbone)
  head = model_lib.build_head(tuple(backbone.output_shape[1:]), 2, config)
  pooled, tail = task.pooled_for_cache(extractor, head, config)
  assert pooled.output_shape == (None, 256) and extractor.output_shape == (None, 7, 7, 256)
  pixels = np.random.default_rng(0).uniform(0, 255, (2, 75, 75, 3)).astype(np.float32)
  np.testing.assert_allclose(tail(pooled(pixels)).numpy(), head(extractor(pixels)).numpy(),
                             rtol=1e-5)
  assert {w.ref() for w in tail.trainable_weights} == {w.ref() for w in head.trainable_weights}
  flat_config = ModelConfig(image_size=75, cut_layer='mixed0', weights='none')
  assert task.pooled_for_cache(extractor, head, flat_config) == (extractor, head)
