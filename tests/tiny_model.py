"""A SavedModel exported exactly as `run_fn` does (`trainer.export.export_serving_model`,
a real Transform graph from tf.Transform on a few in-memory examples), with a tiny
backbone in place of InceptionV3 (the signatures do not depend on it): fast to build."""

import functools
import os
from typing import Sequence

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
from trainer.preprocessing import preprocessing_fn

IMAGE_SIZE = 75
CLASS_NAMES = ['cats', 'dogs']


def transform_output(folder: str, image_size: int = IMAGE_SIZE) -> tft.TFTransformOutput:
  """The Transform component's graph for the raw schema SchemaGen infers ([1]-shaped features)."""
  raw_spec = {'image': tf.io.FixedLenFeature([1], tf.string),
              'label': tf.io.FixedLenFeature([1], tf.int64),
              'filename': tf.io.FixedLenFeature([1], tf.string)}
  metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_spec))
  raw = [{'image': [encode_image(random_pixels((20, 20, 3), i))], 'label': [i % 2],
          'filename': [b'x.png']} for i in range(2)]
  fn = functools.partial(preprocessing_fn, custom_config={'image_size': image_size})
  with beam.Pipeline(options=PipelineOptions([])) as pipeline, tft_beam.Context(
      temp_dir=os.path.join(folder, 'tmp'), force_tf_compat_v1=False):
    transform_fn = (pipeline | beam.Create(raw), metadata) | tft_beam.AnalyzeDataset(fn)
    _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(folder, 'transform'))
  # The Transform component also writes the raw schema, which the serving signatures read.
  metadata_io.write_metadata(
      metadata, os.path.join(folder, 'transform', tft.TFTransformOutput.RAW_METADATA_DIR))
  return tft.TFTransformOutput(os.path.join(folder, 'transform'))


def tiny_model(num_classes: int, image_size: int = IMAGE_SIZE, seed: int = 0) -> keras.Model:
  """A strided conv 'backbone' + the project's head: the model `run_fn` assembles."""
  keras.utils.set_random_seed(seed)
  config = ModelConfig(image_size=image_size, dense_units=4)
  backbone = keras.Sequential([keras.Input((image_size, image_size, 3)),
                               keras.layers.Conv2D(2, 5, strides=5)], name='tiny_backbone')
  head = model_lib.build_head(tuple(backbone.output_shape[1:]), num_classes, config)
  return model_lib.assemble(backbone, head)


def export_tiny_model(folder: str, class_names: Sequence[str] = CLASS_NAMES,
                      image_size: int = IMAGE_SIZE,
                      serving: ServingConfig = ServingConfig()) -> str:
  """Exports `tiny_model` with its serving signatures (and the config's serving limits)
  to `<folder>/model`; returns that path."""
  export_dir = os.path.join(folder, 'model')
  export.export_serving_model(tiny_model(len(class_names), image_size),
                              transform_output(folder, image_size), list(class_names),
                              image_size, export_dir, serving)
  return export_dir
