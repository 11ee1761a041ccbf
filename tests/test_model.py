import numpy as np
import pytest
import tf_keras as keras

from pipeline.configs import ModelConfig
from tests.conftest import compiled_classifier
from trainer import model as model_lib


@pytest.fixture(scope='module')
def binary_model():
  return compiled_classifier(2, ModelConfig(weights='none'), learning_rate=1e-4)


def _backbone(model):
  return model.get_layer('inception_v3_mixed7')


def test_every_backbone_layer_is_frozen(binary_model):
  backbone = _backbone(binary_model)
  assert not backbone.trainable
  assert all(not layer.trainable for layer in backbone.layers)
  assert backbone.trainable_weights == []


def test_trainable_weights_are_only_the_head(binary_model):
  head = binary_model.get_layer('head')
  assert {id(w) for w in binary_model.trainable_weights} == {id(w) for w in head.trainable_weights}
  # Dense(1024) on 7x7x768 plus Dense(1): the lesson's 38.5M head parameters.
  assert sum(int(np.prod(w.shape)) for w in binary_model.trainable_weights) == (
      7 * 7 * 768 * 1024 + 1024 + 1024 + 1)


def test_cut_at_mixed7_gives_7x7x768(binary_model):
  assert tuple(_backbone(binary_model).output.shape[1:]) == (7, 7, 768)
  assert _backbone(binary_model).layers[-1].name == 'mixed7'


def test_head_layers_are_the_lessons(binary_model):
  head = binary_model.get_layer('head')
  kinds = [type(layer).__name__ for layer in head.layers]
  assert kinds == ['InputLayer', 'Flatten', 'Dense', 'Dropout', 'Dense']
  dense, dropout, output = head.layers[2], head.layers[3], head.layers[4]
  assert (dense.units, dense.activation.__name__) == (1024, 'relu')
  assert dropout.rate == 0.2
  assert (output.units, output.activation.__name__) == (1, 'sigmoid')
  assert isinstance(binary_model.optimizer, keras.optimizers.RMSprop)
  assert binary_model.loss == 'binary_crossentropy'


def test_average_pooling_head_reads_the_channel_means():
  config = ModelConfig(image_size=75, pooling='average')
  head = model_lib.build_head((7, 7, 768), 2, config)
  kinds = [type(layer).__name__ for layer in head.layers]
  assert kinds == ['InputLayer', 'GlobalAveragePooling2D', 'Dense', 'Dropout', 'Dense']
  assert head.count_params() == 768 * 1024 + 1024 + 1024 + 1  # 0.8M instead of 38.5M
  features = np.random.default_rng(0).normal(size=(2, 7, 7, 768)).astype(np.float32)
  means = np.broadcast_to(features.mean(axis=(1, 2), keepdims=True), features.shape)
  np.testing.assert_allclose(head(features, training=False).numpy(),
                             head(np.ascontiguousarray(means), training=False).numpy(), atol=1e-6)


def test_more_classes_use_softmax():
  model = compiled_classifier(5, ModelConfig(weights='none', image_size=75),
                              learning_rate=1e-4)
  output = model.get_layer('head').layers[-1]
  assert (output.units, output.activation.__name__) == (5, 'softmax')
  assert model.loss == 'sparse_categorical_crossentropy'
  assert model.output_shape == (None, 5)


def test_input_is_scaled_like_inception_preprocess_input(binary_model):
  from tf_keras.applications.inception_v3 import preprocess_input
  rescale = binary_model.get_layer('inception_preprocess')
  pixels = np.random.default_rng(0).uniform(0, 255, (2, 150, 150, 3)).astype(np.float32)
  np.testing.assert_allclose(rescale(pixels).numpy(), preprocess_input(pixels.copy()), atol=1e-6)


def test_unknown_cut_layer_lists_valid_names():
  with pytest.raises(model_lib.ModelConfigError, match=r"Unknown cut layer 'mixed77'.*mixed0, mixed1"):
    model_lib.build_backbone(ModelConfig(weights='none', cut_layer='mixed77', image_size=75))


def test_other_cut_layer():
  backbone = model_lib.build_backbone(ModelConfig(weights='none', cut_layer='mixed5',
                                                  image_size=150))
  assert tuple(backbone.output.shape[1:]) == (7, 7, 768)
  assert backbone.layers[-1].name == 'mixed5'


@pytest.fixture(scope='module')
def weights_file(tmp_path_factory):
  """A `_notop.h5` file written from a top-less InceptionV3 with random weights."""
  base = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=(75, 75, 3))
  path = str(tmp_path_factory.mktemp('weights') / 'inception_v3_notop.h5')
  base.save_weights(path)
  return path, base


def test_weights_file_loads_bit_identical(weights_file):
  path, source = weights_file
  backbone = model_lib.build_backbone(ModelConfig(weights=path, image_size=75))
  # The backbone is the source's first layers (up to mixed7), in the same order.
  pairs = list(zip(backbone.layers, source.layers))
  assert [type(a) for a, _ in pairs] == [type(b) for _, b in pairs]
  compared = 0
  for loaded_layer, source_layer in pairs:
    for loaded, expected in zip(loaded_layer.get_weights(), source_layer.get_weights()):
      np.testing.assert_array_equal(loaded, expected)
      compared += 1
  assert compared > 100
  fresh = model_lib.build_backbone(ModelConfig(weights='none', image_size=75))
  assert not np.array_equal(fresh.layers[1].get_weights()[0], source.layers[1].get_weights()[0])


def test_truncated_weights_file_fails_clearly(weights_file, tmp_path):
  path, _ = weights_file
  truncated = tmp_path / 'truncated.h5'
  truncated.write_bytes(open(path, 'rb').read()[:100_000])
  with pytest.raises(model_lib.ModelConfigError, match='truncated|not an HDF5'):
    model_lib.build_backbone(ModelConfig(weights=str(truncated), image_size=75))


def test_wrong_architecture_weights_fail_clearly(tmp_path):
  other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
  path = str(tmp_path / 'other.h5')
  other.save_weights(path)
  with pytest.raises(model_lib.ModelConfigError, match='does not fit a top-less InceptionV3'):
    model_lib.build_backbone(ModelConfig(weights=path, image_size=75))


def test_missing_or_non_hdf5_weights_file(tmp_path):
  with pytest.raises(model_lib.ModelConfigError, match='does not exist'):
    model_lib.build_backbone(ModelConfig(weights=str(tmp_path / 'nope.h5'), image_size=75))
  text = tmp_path / 'text.h5'
  text.write_text('not weights')
  with pytest.raises(model_lib.ModelConfigError, match='not an HDF5'):
    model_lib.build_backbone(ModelConfig(weights=str(text), image_size=75))


def _digit_pixels(digits=(3, 8), size: int = 75) -> np.ndarray:
  """scikit-learn digits as [N, size, size, 3] pixels 0..255 (as the demo writes them)."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  data = load_digits()
  images = data.images[np.isin(data.target, digits)][:64] * (255.0 / 16.0)
  return np.repeat(np.kron(images, np.ones((10, 10)))[:, :size, :size, None], 3, axis=-1)


@pytest.mark.parametrize('offset, steady', [(1.0, True), (0.0, False)])
def test_calibrated_features_are_steady_with_the_batchnorm_offset(tmp_path, offset, steady):
  """The offline stand-in's mixed7 features under a 1-pixel input change: ~8% with
  BatchNorm beta 1.0 (the default), ~77% with 0 (a chaotic random network)."""
  pixels = _digit_pixels().astype(np.float32)
  path = str(tmp_path / 'calibrated_notop.h5')
  model_lib.write_calibrated_weights(path, pixels, batchnorm_offset=offset)
  extractor = model_lib.feature_extractor(
      model_lib.build_backbone(ModelConfig(weights=path, image_size=75)))
  noise = np.random.default_rng(0).normal(0, 1.0, pixels.shape).astype(np.float32)
  clean = extractor.predict(pixels, verbose=0)
  moved = np.abs(extractor.predict(pixels + noise, verbose=0) - clean).mean()
  assert (moved / np.abs(clean).mean() < 0.2) == steady


def test_cosine_decay_settles_the_last_epochs_and_constant_is_the_lessons():
  cosine = model_lib.learning_rate_schedule(1e-4, 'cosine', 0, 20)
  rates = [cosine(epoch) for epoch in range(20)]
  assert rates[0] == pytest.approx(1e-4) and rates[10] == pytest.approx(5e-5)
  assert all(a > b > 0 for a, b in zip(rates, rates[1:]))
  assert rates[-1] < 0.01 * 1e-4
  phase_two = model_lib.learning_rate_schedule(1e-5, 'cosine', 20, 24)
  assert [phase_two(e) for e in (20, 22)] == pytest.approx([1e-5, 5e-6])
  constant = model_lib.learning_rate_schedule(1e-4, 'constant', 0, 20)
  assert {constant(epoch) for epoch in range(20)} == {1e-4}

