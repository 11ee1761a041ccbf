"""Bad requests to the exported model's `serving_image_bytes`: clear errors, the process survives.

The model: `tests/tiny_model.py` (default serving limits; the limits themselves are
tested in `tests/test_serving_limits.py`).
"""

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import encode_image, random_pixels
from tests.tiny_model import CLASS_NAMES, export_tiny_model
from tools import predict
from trainer import export

NOT_AN_IMAGE = b'this is not an image'


@pytest.fixture(scope='module')
def exported(tmp_path_factory) -> str:
  return export_tiny_model(str(tmp_path_factory.mktemp('serving')))


@pytest.fixture(scope='module')
def signature(exported):
  return tf.saved_model.load(exported).signatures[export.IMAGE_BYTES_SIGNATURE]


def _call(signature, images):
  return signature(image_bytes=tf.constant(images, dtype=tf.string))


def _good(seed: int = 0, image_format: str = 'PNG') -> bytes:
  return encode_image(random_pixels((40, 30, 3), seed), image_format)


def _assert_good_call_works(signature):
  outputs = _call(signature, [_good(1), _good(2, 'JPEG')])
  assert outputs['probabilities'].shape == (2, 2)
  np.testing.assert_allclose(outputs['probabilities'].numpy().sum(axis=1), 1.0, atol=1e-6)
  assert set(outputs['class_name'].numpy()) <= {b'cats', b'dogs'}


@pytest.mark.parametrize('images', [
    [NOT_AN_IMAGE],
    [b''],
    [_good()[:60]],                    # truncated PNG
    [_good(3, 'JPEG')[:300]],          # truncated JPEG
    [_good(4), NOT_AN_IMAGE, _good(5)],  # one bad image fails the whole batch
], ids=['text', 'empty-bytes', 'truncated-png', 'truncated-jpeg', 'mixed-batch'])
def test_undecodable_image_is_an_invalid_argument_and_the_process_survives(signature, images):
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    _call(signature, images)
  message = str(error.value)
  readable = ('Unknown image file format', 'Invalid PNG data', 'Invalid JPEG data', 'Input is empty')
  assert any(text in message for text in readable), message
  _assert_good_call_works(signature)


def test_empty_batch_returns_empty_outputs(signature):
  outputs = _call(signature, [])
  assert outputs['probabilities'].shape == (0, len(CLASS_NAMES))
  assert outputs['class_id'].shape == (0,) and outputs['class_name'].shape == (0,)
  _assert_good_call_works(signature)


def test_mixed_formats_and_sizes_in_one_batch(signature):
  images = [_good(6), _good(7, 'JPEG'), _good(8, 'GIF'), _good(9, 'BMP'),
            encode_image(random_pixels((300, 17)), 'PNG')]  # grayscale, odd shape
  assert _call(signature, images)['probabilities'].shape == (5, 2)


def test_cli_predict_reports_bad_files_one_by_one(exported, tmp_path):
  good, bad = tmp_path / 'good.png', tmp_path / 'bad.jpg'
  good.write_bytes(_good(10))
  bad.write_bytes(NOT_AN_IMAGE)
  rows = list(predict.predict_files(exported, [str(bad), str(tmp_path / 'missing.png'), str(good)]))
  assert rows[0] == {'path': str(bad), 'error': 'not a decodable image'}
  assert rows[1]['error'] == 'No such file or directory'
  assert rows[2]['class_name'] in CLASS_NAMES
