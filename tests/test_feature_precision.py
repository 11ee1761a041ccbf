"""The bfloat16 feature pass: the same backbone and weights, features within a stated
tolerance of float32; 'auto' follows the hardware."""

import numpy as np
import pytest
import tensorflow as tf

from pipeline.configs import ConfigError, ModelConfig, load_config
from trainer import model as model_lib
from trainer.model import write_calibrated_weights

# bfloat16 keeps 8 significant bits (relative rounding 2^-9 per operation) and the errors
# grow with depth. Stated tolerance at mixed2 (75 px, calibrated random weights): max
# |error| <= 15% and mean |error| <= 2% of the largest float32 feature (measured here:
# 3.4% and 0.5%). At mixed7 `make bench` reports the errors and the accuracy cost.
MAX_ERROR, MEAN_ERROR = 0.15, 0.02


@pytest.fixture(scope='module')
def backbone(tmp_path_factory):
  """Calibrated random weights (feature scale ~1, as pretrained ones), cut at mixed2."""
  images = np.random.default_rng(0).integers(0, 256, (16, 75, 75, 3), dtype=np.uint8)
  weights = str(tmp_path_factory.mktemp('weights') / 'calibrated_notop.h5')
  write_calibrated_weights(weights, images)
  return model_lib.build_backbone(ModelConfig(image_size=75, cut_layer='mixed2',
                                              weights=weights))


def test_bfloat16_features_are_float32_features_within_tolerance(backbone):
  pixels = np.random.default_rng(1).uniform(0, 255, (8, 75, 75, 3)).astype(np.float32)
  full = model_lib.feature_extractor(backbone)(pixels, training=False).numpy()
  half = model_lib.feature_extractor(backbone, 'bfloat16')(pixels, training=False)
  assert half.dtype == tf.bfloat16 and full.dtype == np.float32
  error = np.abs(tf.cast(half, tf.float32).numpy() - full)
  scale = np.abs(full).max()
  assert scale > 0.1  # calibrated: not the ~1e-3 of uncalibrated random weights
  assert error.max() <= MAX_ERROR * scale and error.mean() <= MEAN_ERROR * scale
  assert error.max() > 0  # it really computed in bfloat16


def test_reduced_precision_copy_shares_the_weights_and_stays_frozen(backbone):
  copy = model_lib.reduced_precision_copy(backbone, 'mixed_bfloat16')
  assert not copy.trainable and copy.layers[-1].compute_dtype == 'bfloat16'
  for a, b in zip(backbone.get_weights(), copy.get_weights()):
    np.testing.assert_array_equal(a, b)
  assert all(w.dtype == tf.float32 for w in copy.weights)
  assert backbone.layers[-1].compute_dtype == 'float32'  # the exported model's backbone


def test_auto_precision_follows_the_hardware(monkeypatch):
  monkeypatch.setattr(model_lib, '_gpu_has_bfloat16', lambda: False)
  assert model_lib.resolve_feature_precision('auto', {'avx512f', 'avx512_bf16'}) == 'bfloat16'
  assert model_lib.resolve_feature_precision('auto', {'amx_bf16'}) == 'bfloat16'
  assert model_lib.resolve_feature_precision('auto', {'avx512f', 'avx2'}) == 'float32'
  assert model_lib.resolve_feature_precision('float32', {'avx512_bf16'}) == 'float32'
  assert model_lib.resolve_feature_precision('bfloat16', set()) == 'bfloat16'
  monkeypatch.setattr(model_lib, '_gpu_has_bfloat16', lambda: True)
  assert model_lib.resolve_feature_precision('auto', set()) == 'bfloat16'


def test_cpu_flags_read_from_cpuinfo(tmp_path):
  cpuinfo = tmp_path / 'cpuinfo'
  cpuinfo.write_text('processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n\n'
                     'processor\t: 1\nflags\t\t: fpu avx512f avx512_bf16\n')
  assert model_lib.cpu_flags(str(cpuinfo)) == {'fpu', 'avx512f', 'avx512_bf16'}
  assert model_lib.cpu_flags(str(tmp_path / 'missing')) == set()


def test_unknown_precision_is_refused():
  with pytest.raises(ConfigError, match="model.feature_precision: expected 'auto' or "
                                        "'float32' or 'bfloat16'"):
    load_config(overrides={'data.path': 'x', 'model.feature_precision': 'fp8'}).validate()
