"""Bad requests to the exported model's `serving_image_bytes`: clear errors, the process survives.

The model is exported by `trainer.export.export_serving_model`, as `run_fn` does,
with a real Transform graph (tf.Transform on a few in-memory examples) and a tiny
backbone in place of InceptionV3 (the signatures do not depend on it).
"""

import functools
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
import tf_keras as keras
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from pipeline.configs import ModelConfig
from tests.conftest import encode_image, random_pixels
from pipeline import predict
from trainer import export, model as model_lib
from trainer.preprocessing import preprocessing_fn

IMAGE_SIZE = 75
CLASS_NAMES = ['cats', 'dogs']
NOT_AN_IMAGE = b'this is not an image'


def _transform_output(folder: str) -> tft.TFTransformOutput:
  """The Transform component's graph for the raw schema SchemaGen infers ([1]-shaped features)."""
  raw_spec = {'image': tf.io.FixedLenFeature([1], tf.string),
              'label': tf.io.FixedLenFeature([1], tf.int64),
              'filename': tf.io.FixedLenFeature([1], tf.string)}
  metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_spec))
  raw = [{'image': [encode_image(random_pixels((20, 20, 3), i))], 'label': [i % 2],
          'filename': [b'x.png']} for i in range(2)]
  fn = functools.partial(preprocessing_fn, custom_config={'image_size': IMAGE_SIZE})
  with beam.Pipeline(options=PipelineOptions([])) as pipeline, tft_beam.Context(
      temp_dir=os.path.join(folder, 'tmp'), force_tf_compat_v1=False):
    transform_fn = (pipeline | beam.Create(raw), metadata) | tft_beam.AnalyzeDataset(fn)
    _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(folder, 'transform'))
  # The Transform component also writes the raw schema, which the serving signatures read.
  metadata_io.write_metadata(
      metadata, os.path.join(folder, 'transform', tft.TFTransformOutput.RAW_METADATA_DIR))
  return tft.TFTransformOutput(os.path.join(folder, 'transform'))


@pytest.fixture(scope='module')
def exported(tmp_path_factory) -> str:
  folder = str(tmp_path_factory.mktemp('serving'))
  keras.utils.set_random_seed(0)
  config = ModelConfig(image_size=IMAGE_SIZE, dense_units=4)
  backbone = keras.Sequential([keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3)),
                               keras.layers.Conv2D(2, 5, strides=5)], name='tiny_backbone')
  head = model_lib.build_head(tuple(backbone.output_shape[1:]), len(CLASS_NAMES), config)
  model = model_lib.assemble(backbone, head)
  export_dir = os.path.join(folder, 'model')
  export.export_serving_model(model, _transform_output(folder), CLASS_NAMES, IMAGE_SIZE,
                              export_dir)
  return export_dir


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
