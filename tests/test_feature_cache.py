"""The feature-cache training path computes the same features and exports the same model."""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from pipeline.configs import ModelConfig
from tests.conftest import compiled_classifier
from trainer import model as model_lib
from trainer.task import cached_features

CONFIG = ModelConfig(weights='none', image_size=75)


def _pixels(n, seed=0):
  return np.random.default_rng(seed).uniform(0, 255, (n, 75, 75, 3)).astype(np.float32)


def test_cached_features_equal_the_backbone_on_the_same_input(tmp_path):
  backbone = model_lib.build_backbone(CONFIG)
  extractor = model_lib.feature_extractor(backbone)
  pixels, labels = _pixels(10), np.arange(10, dtype=np.float32).reshape(-1, 1)
  dataset = tf.data.Dataset.from_tensor_slices((pixels, labels)).batch(4)
  cached = cached_features(dataset, extractor, str(tmp_path / 'train'), batch_size=4)
  for _ in range(2):  # the second pass reads the cache file
    features = np.concatenate([f.numpy() for f, _ in cached])
    seen = np.concatenate([y.numpy() for _, y in cached])
    np.testing.assert_array_equal(seen, labels)
    direct = backbone(pixels / 127.5 - 1.0, training=False).numpy()
    np.testing.assert_allclose(features, direct, atol=1e-5)
  assert list(tmp_path.iterdir()), 'features were not cached on disk'


def test_assembled_model_is_the_uncached_model_and_predicts_like_backbone_plus_head():
  keras.utils.set_random_seed(3)
  backbone = model_lib.build_backbone(CONFIG)
  head = model_lib.build_head(tuple(backbone.output_shape[1:]), 2, CONFIG)
  assembled = model_lib.assemble(backbone, head)
  uncached = compiled_classifier(2, CONFIG, learning_rate=1e-4)
  assert [type(l).__name__ for l in assembled.layers] == [type(l).__name__ for l in uncached.layers]
  assert assembled.output_shape == uncached.output_shape
  assert assembled.count_params() == uncached.count_params()
  pixels = _pixels(3, seed=1)
  features = model_lib.feature_extractor(backbone)(pixels, training=False)
  np.testing.assert_allclose(assembled(pixels, training=False).numpy(),
                             head(features, training=False).numpy(), atol=1e-5)
