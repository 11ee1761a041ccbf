"""An ExampleGen for a folder of unlabeled images, for batch inference (BulkInferrer).

Minimal and kept apart from the labeled ingestion: every file below the folder is read
by ingestion's safe reader (`components.image_walk`) and written as a tf.Example with
`image` (the bytes) and `filename` (the path as `transfer-pipeline predict` prints it),
in one split, `unlabeled`. Skipped files go to `skipped.jsonl` with their reason.
"""

import json
import os
from typing import Tuple

import tensorflow as tf
from tfx import v1 as tfx
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

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


@tfx.dsl.components.component
def UnlabeledImageExampleGen(
    examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    data_root: tfx.dsl.components.Parameter[str],
    max_image_pixels: tfx.dsl.components.Parameter[int] = 40_000_000,
    data_fingerprint: tfx.dsl.components.Parameter[str] = '',
) -> None:
  """tf.Examples (`image`, `filename`) of every readable image below `data_root`.

  `data_fingerprint` is not read: it changes with the folder's files, so that the
  pipeline cache never reuses the examples of an older folder.
  """
  del data_fingerprint
  written, skipped = write_unlabeled_examples(data_root, examples.uri, max_image_pixels)
  examples.split_names = artifact_utils.encode_split_names([SPLIT])
  examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
  examples_utils.set_file_format(examples, 'tfrecords_gzip')
  examples.set_int_custom_property('num_examples', written)
  examples.set_int_custom_property('num_skipped', skipped)
  print(f'UnlabeledImageExampleGen: {written} images from {data_root}, {skipped} skipped '
        f'(see {os.path.join(examples.uri, SKIPPED_FILE)})')
