"""A small exported model for serving tests: real Transform graph, tiny backbone.

The model is exported by `trainer.export.export_serving_model`, as `run_fn` does,
with a real Transform graph (tf.Transform on a few in-memory examples) and a tiny
backbone in place of InceptionV3 (the signatures do not depend on it).
"""

import dataclasses
import functools
import os

import apache_beam as beam
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
import tf_keras as keras
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from pipeline.configs import ModelConfig, ServingConfig
from tests.conftest import encode_image, random_pixels
from trainer import export, model as model_lib
from trainer.image_limits import ServingLimits
from trainer.preprocessing import preprocessing_fn

IMAGE_SIZE = 75
CLASS_NAMES = ['cats', 'dogs']


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


def export_tiny_model(folder: str, serving: ServingConfig = ServingConfig()) -> str:
  """Exports the tiny model under `folder` with the config's serving limits; its path."""
  keras.utils.set_random_seed(0)
  config = ModelConfig(image_size=IMAGE_SIZE, dense_units=4)
  backbone = keras.Sequential([keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3)),
                               keras.layers.Conv2D(2, 5, strides=5)], name='tiny_backbone')
  head = model_lib.build_head(tuple(backbone.output_shape[1:]), len(CLASS_NAMES), config)
  model = model_lib.assemble(backbone, head)
  export_dir = os.path.join(folder, 'model')
  export.export_serving_model(model, _transform_output(folder), CLASS_NAMES, IMAGE_SIZE,
                              export_dir, ServingLimits(**dataclasses.asdict(serving)))
  return export_dir
