"""An ExampleGen for a folder of unlabeled images, for batch inference (BulkInferrer).

Minimal and kept apart from the labeled ingestion: every file below the folder is read
by ingestion's safe reader (`components.image_walk`) and written as a tf.Example with
`image` (the bytes) and `filename` (the path as `transfer-pipeline predict` prints it),
in one split, `unlabeled`. Skipped files go to `skipped.jsonl` with their reason.
"""

import json
import logging
import os
from typing import Any, Dict, List, Tuple

import tensorflow as tf
from google.protobuf import wrappers_pb2
from tfx import types
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import base_beam_executor, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs

from components.image_folder_example_gen import (ImageFolderDriver, describe_examples,
                                                 unpack_custom_config)

from components.image_walk import walk_images
from components.prediction_table import display_path
from contract.features import FILENAME_KEY, IMAGE_KEY

SPLIT = 'unlabeled'
SKIPPED_FILE = 'skipped.jsonl'


def unlabeled_example(image: bytes, path: str) -> tf.train.Example:
  return tf.train.Example(features=tf.train.Features(feature={
      IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
      FILENAME_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[display_path(path).encode('utf-8')])),
  }))


def write_unlabeled_examples(data_root: str, output_dir: str,
                             max_pixels: int) -> Tuple[int, int]:
  """Writes `Split-unlabeled/` (gzipped TFRecords) and `skipped.jsonl`; returns
  (examples written, files skipped). Streams: memory does not grow with the folder."""
  split_dir = os.path.join(output_dir, f'Split-{SPLIT}')
  tf.io.gfile.makedirs(split_dir)
  written = skipped = 0
  with tf.io.TFRecordWriter(os.path.join(split_dir, 'data_tfrecord-00000-of-00001.gz'),
                            options='GZIP') as examples, \
      tf.io.gfile.GFile(os.path.join(output_dir, SKIPPED_FILE), 'w') as skipped_log:
    for item in walk_images([data_root], max_pixels):
      if item.image is None:
        skipped_log.write(json.dumps({'path': display_path(item.path), 'reason': item.reason,
                                      'detail': item.detail}, ensure_ascii=False) + '\n')
        skipped += 1
      else:
        examples.write(unlabeled_example(item.image, item.path).SerializeToString())
        written += 1
  return written, skipped


def read_skipped(examples_uri: str):
  """(path, reason) of each file the ExampleGen skipped."""
  path = os.path.join(examples_uri, SKIPPED_FILE)
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return [(row['path'], row['reason']) for row in map(json.loads, f) if row]


class Executor(base_beam_executor.BaseBeamExecutor):
  """Writes the unlabeled examples of `input_base` (one process: a folder to predict on)."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    data_root = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    max_pixels = unpack_custom_config(exec_properties, wrappers_pb2.Int64Value()).value
    written, skipped = write_unlabeled_examples(data_root, examples.uri, max_pixels)
    describe_examples(examples, [SPLIT])
    examples.set_int_custom_property('num_examples', written)
    examples.set_int_custom_property('num_skipped', skipped)
    logging.info('UnlabeledImageExampleGen: %d images from %s, %d skipped (see %s).', written,
                 data_root, skipped, os.path.join(examples.uri, SKIPPED_FILE))


class UnlabeledImageExampleGen(FileBasedExampleGen):
  """tf.Examples (`image`, `filename`) of every readable image below `input_base`, in one
  split, `unlabeled`. Like ImageFolderExampleGen, its driver fingerprints the folder when
  the component runs, so a changed folder is never served from an older run's cache."""

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
  DRIVER_CLASS = ImageFolderDriver

  def __init__(self, input_base: str, max_image_pixels: int):
    custom_config = example_gen_pb2.CustomConfig()
    custom_config.custom_config.Pack(wrappers_pb2.Int64Value(value=max_image_pixels))
    super().__init__(
        input_base=input_base, custom_config=custom_config,
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name=SPLIT, pattern='*')]),
        output_config=example_gen_pb2.Output())  # one split, as found
