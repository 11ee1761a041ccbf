"""TFLite export on `tests.tiny_model` (exported as run_fn does, tiny backbone): the three
quantizations, agreement with the SavedModel, and `predict --model model.tflite`.
The demo model itself (InceptionV3@mixed7) is converted in tests/test_pipeline_e2e.py."""

import os

import numpy as np
import pytest
import tensorflow as tf

from components.inference import prediction_table
from tools import batch_predict
from tests.conftest import encode_image, random_pixels
from tests.tiny_model import IMAGE_SIZE, export_tiny_model, tiny_model
from trainer import tflite_export

CLASS_NAMES = ['cats', 'dogs', 'birds']


def _pixels(seed: int, batches: int = 3, batch: int = 8):
  rng = np.random.default_rng(seed)
  return [rng.integers(0, 256, (batch, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
          for _ in range(batches)]


@pytest.mark.parametrize('quantization, min_agreement, max_difference', [
    ('float32', 1.0, 1e-5), ('dynamic_range', 0.99, 0.05)])
def test_float_and_dynamic_range_agree_with_keras(tmp_path, quantization, min_agreement,
                                                  max_difference):
  check = tflite_export.write_tflite(tiny_model(3), CLASS_NAMES, IMAGE_SIZE, quantization,
                                     _pixels(0), _pixels(1), str(tmp_path))
  assert os.path.getsize(tmp_path / 'model.tflite') == check['bytes']
  assert tflite_export.read_check(str(tmp_path)) == check
  split = check['eval_split']
  assert split['examples'] == 24
  assert split['top1_agreement'] >= min_agreement
  assert split['max_abs_probability_difference'] <= max_difference


def test_int8_takes_uint8_pixels_and_is_calibrated_on_train_images(tmp_path):
  check = tflite_export.write_tflite(tiny_model(3), CLASS_NAMES, IMAGE_SIZE, 'int8',
                                     _pixels(0), _pixels(1), str(tmp_path),
                                     representative_images=10)
  assert check['representative_images'] == 10
  interpreter = tf.lite.Interpreter(model_path=str(tmp_path / 'model.tflite'))
  assert interpreter.get_input_details()[0]['dtype'] == np.uint8
  # Measured, not a fixed bound: int8 on a random tiny model agrees on most images.
  assert check['eval_split']['top1_agreement'] >= 0.8, check


def test_unknown_quantization_is_refused():
  with pytest.raises(ValueError, match='expected one of'):
    tflite_export.convert(tiny_model(2), 2, IMAGE_SIZE, 'int4')


def test_predict_with_model_tflite_matches_the_saved_model(tmp_path):
  """`predict --model model.tflite` writes the same rows as with the SavedModel."""
  model_dir = export_tiny_model(str(tmp_path), CLASS_NAMES)
  # tiny_model is seeded: this is the very model that was exported.
  tflite_export.write_tflite(tiny_model(len(CLASS_NAMES)), CLASS_NAMES, IMAGE_SIZE, 'float32',
                             [], _pixels(1, batches=1), model_dir)
  images = tmp_path / 'images'
  images.mkdir()
  for i in range(5):
    (images / f'{i}.png').write_bytes(encode_image(random_pixels((40, 50, 3), seed=i)))
  (images / 'bad.jpg').write_bytes(b'no image')
  rows = {}
  for name, model in (('saved', model_dir), ('tflite', os.path.join(model_dir, 'model.tflite'))):
    out = tmp_path / f'{name}.csv'
    assert batch_predict.command(model, [str(images)], str(out), batch_size=2) == 0
    rows[name] = prediction_table.read_rows(str(out))
  assert [r['path'] for r in rows['tflite']] == [r['path'] for r in rows['saved']]
  assert rows['tflite'][-1] == {'path': str(images / 'bad.jpg'),
                                'skipped': 'not a readable image'}
  for saved, lite in zip(rows['saved'][:-1], rows['tflite'][:-1]):
    assert lite['class_name'] == saved['class_name']
    assert list(lite['probabilities']) == CLASS_NAMES
    np.testing.assert_allclose(list(lite['probabilities'].values()),
                               list(saved['probabilities'].values()), atol=1e-4)
