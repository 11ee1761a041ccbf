"""An ExampleGen for a folder of unlabeled images, for batch inference (BulkInferrer), on Beam.

The labeled ExampleGen's machinery without classes or splits:

    image_listing.list_files (every file below a local folder or any Beam URI)
      -> ingest_pipeline.plan_shards (a deterministic shuffled order, by a hash of the path)
      -> ParDo per shard: read with the safe reader, write Split-unlabeled/data_tfrecord-i-of-n.gz
         output: a record per skipped file -> skipped.jsonl

Each example holds `image` (the bytes) and `filename` (the path as `transfer-pipeline
predict` prints it). Shards are byte-identical whichever runner writes them, and memory
stays flat (one image at a time per worker).
"""

import json
import logging
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf
from tfx import types
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import base_beam_executor, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs

from components.example_gen import image_listing, ingest_pipeline
from components.example_gen.image_folder_example_gen import (ImageFolderDriver, describe_examples,
                                                 pack_ingest_options, unpack_ingest_options)
from components.example_gen.image_ingest import Refused
from components.example_gen.image_listing import Candidate
from components.inference.prediction_table import display_path
from contract.features import FILENAME_KEY, IMAGE_KEY
from contract.settings import IngestOptions

SPLIT = 'unlabeled'
SKIPPED_FILE = 'skipped.jsonl'


def unlabeled_example(image: bytes, path: str) -> tf.train.Example:
  return tf.train.Example(features=tf.train.Features(feature={
      IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
      FILENAME_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[display_path(path).encode('utf-8')])),
  }))


class WriteUnlabeledShard(beam.DoFn):
  """Reads, checks and writes the images of one shard; outputs a record per skipped file."""

  def __init__(self, root: str, output_dir: str, options: IngestOptions):
    self._root = root
    self._output_dir = output_dir
    self._options = options

  def process(self, shard: ingest_pipeline.Shard) -> Iterator[Dict[str, str]]:
    real_root = ingest_pipeline.real_root_of(self._root)
    writer = ingest_pipeline.ShardWriter(self._output_dir, shard, (SPLIT,))
    try:
      for n, cand in enumerate(shard.items, 1):
        try:
          image = ingest_pipeline.read_candidate(cand, real_root, self._options).data
        except Refused as refusal:
          yield {'path': display_path(cand.path), 'reason': refusal.reason,
                 'detail': refusal.detail}
          continue
        writer.write(SPLIT, unlabeled_example(image, cand.path))
        if n % ingest_pipeline.PROGRESS_EVERY == 0:
          logging.info('Shard %d/%d: %d/%d files.', shard.index + 1, shard.count, n,
                       len(shard.items))
    finally:
      writer.close()


def _write_skipped(_, output_dir: str, skipped: Sequence[Dict[str, str]]) -> None:
  with tf.io.gfile.GFile(os.path.join(output_dir, SKIPPED_FILE), 'w') as f:
    f.write(''.join(json.dumps(record, ensure_ascii=False) + '\n'
                    for record in sorted(skipped, key=lambda r: r['path'])))


@beam.ptransform_fn
def UnlabeledToTFRecords(pipeline: beam.Pipeline, root: str, files: Sequence[Candidate],  # pylint: disable=invalid-name
                         output_dir: str, options: IngestOptions) -> beam.pvalue.PCollection:
  """Writes `Split-unlabeled/` (gzipped TFRecords) and `skipped.jsonl` (sorted by path)."""
  skipped = (pipeline
             | 'Shards' >> beam.Create(ingest_pipeline.plan_shards(files, options.num_shards))
             | 'ReadCheckWrite' >> beam.ParDo(WriteUnlabeledShard(root, output_dir, options)))
  return (pipeline
          | 'Once' >> beam.Create([None])
          | 'WriteSkipped' >> beam.Map(_write_skipped, output_dir,
                                       skipped=beam.pvalue.AsList(skipped)))


def read_skipped(examples_uri: str) -> List[Tuple[str, str]]:
  """(path, reason) of each file the ExampleGen skipped."""
  path = os.path.join(examples_uri, SKIPPED_FILE)
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return [(row['path'], row['reason']) for row in map(json.loads, f) if row]


def _run(pipeline: beam.Pipeline, data_root: str, output_dir: str, options: IngestOptions,
         fingerprint: Optional[str] = None) -> Tuple[int, int]:
  """Lists `data_root` (reusing the driver's listing, see `image_listing.list_files`) and
  runs `pipeline` over it; (examples written, files skipped)."""
  with pipeline:  # has set the filesystems' options (s3://) before the listing
    files = image_listing.list_files(data_root, fingerprint)
    _ = pipeline | UnlabeledToTFRecords(data_root, files, output_dir, options)  # pylint: disable=no-value-for-parameter
  skipped = len(read_skipped(output_dir))  # every file listed is written or skipped
  return len(files) - skipped, skipped


def write_unlabeled_examples(data_root: str, output_dir: str, max_pixels: int,
                             num_shards: int = IngestOptions.num_shards,
                             beam_args: Optional[List[str]] = None) -> Tuple[int, int]:
  """The ExampleGen's output, in this process (Beam's FnApiRunner unless `beam_args` say
  otherwise); returns (examples written, files skipped)."""
  return _run(ingest_pipeline.local_pipeline(beam_args), data_root, output_dir,
              IngestOptions(num_shards=num_shards, max_image_pixels=max_pixels))


class Executor(base_beam_executor.BaseBeamExecutor):
  """Lists `input_base`, then writes its examples on the configured Beam runner."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    data_root = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    written, skipped = _run(self._make_beam_pipeline(), data_root, examples.uri,
                            unpack_ingest_options(exec_properties),
                            exec_properties.get('input_fingerprint'))
    describe_examples(examples, [SPLIT])
    examples.set_int_custom_property('num_examples', written)
    examples.set_int_custom_property('num_skipped', skipped)
    logging.info('UnlabeledImageExampleGen: %d images from %s, %d skipped (see %s).', written,
                 data_root, skipped, os.path.join(examples.uri, SKIPPED_FILE))


class UnlabeledImageExampleGen(FileBasedExampleGen):
  """tf.Examples (`image`, `filename`) of every readable image below `input_base` (a local
  folder or any URI Beam reads), in one split, `unlabeled`. Like ImageFolderExampleGen,
  its driver fingerprints the folder when the component runs, so a changed folder is
  never served from an older run's cache."""

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
  DRIVER_CLASS = ImageFolderDriver

  def __init__(self, input_base: str, max_image_pixels: int,
               max_image_bytes: int = IngestOptions.max_image_bytes,
               num_shards: int = IngestOptions.num_shards,
               max_image_side: int = IngestOptions.max_image_side):
    options = IngestOptions(num_shards=num_shards, max_image_pixels=max_image_pixels,
                            max_image_bytes=max_image_bytes, max_image_side=max_image_side)
    super().__init__(
        input_base=input_base, custom_config=pack_ingest_options(options),
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name=SPLIT, pattern='*')]),
        output_config=example_gen_pb2.Output())  # one split, as found
