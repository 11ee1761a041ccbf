"""ImageFolderExampleGen: TFX's file-based ExampleGen over a folder of images, on Beam.

A `FileBasedExampleGen` with its own driver and executor:
- the driver fingerprints every file under `input_base` when the component runs (as
  TFX's own driver does for the files of its split patterns, but recursively and on any
  Beam filesystem), so a changed image re-runs ExampleGen and everything after it;
- the executor lists the folder, decides classes and splits, and runs
  `ingest_pipeline.IngestToTFRecords` in the component's Beam pipeline, on whichever
  runner `beam_pipeline_args` name.

Class names are decided here, at run time, and travel with the data: the Examples
artifact's `label_vocabulary` property and `label_vocabulary.txt`, and a `class_name`
feature in every example (Transform's class vocabulary, Evaluator slices).

Not `BaseExampleGenExecutor`: its WriteSplit reshuffles every example through a
GroupByKey (a random order each run, the whole data set held by the DirectRunner);
shards written per unit of work keep a fixed, class-mixed order and flat memory.
"""

import dataclasses
import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message
from tfx import types
from tfx.components.example_gen import driver, input_processor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.example_gen import image_listing, ingest_pipeline
from components.example_gen.image_listing import SPLITS
from contract.settings import IngestOptions


class _FolderInputProcessor(input_processor.FileBasedInputProcessor):
  """Fingerprints everything below the data folder (any depth, any Beam filesystem)."""

  def resolve_span_and_version(self):
    # Outside a Beam pipeline: filesystems (s3://) take their settings from the standard
    # environment (AWS_ENDPOINT_URL, credentials), not from beam_pipeline_args.
    FileSystems.set_options(PipelineOptions())
    self._fingerprint = image_listing.fingerprint(self._input_base_uri)
    return 0, None


class ImageFolderDriver(driver.FileBasedDriver):
  """The file-based ExampleGen driver with a recursive fingerprint of the data folder."""

  def get_input_processor(self, splits, range_config=None, input_base_uri=None):
    return _FolderInputProcessor(input_base_uri, splits, range_config)


def unpack_custom_config(exec_properties: Dict[str, Any], message: Message) -> Message:
  """The ExampleGen's `custom_config` (a CustomConfig proto), unpacked into `message`."""
  config = example_gen_pb2.CustomConfig()
  proto_utils.json_to_proto(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY], config)
  config.custom_config.Unpack(message)
  return message


def describe_examples(examples: types.Artifact, split_names: List[str]) -> None:
  """Marks `examples` as splits of gzipped tf.Example TFRecords, as TFX's ExampleGens do."""
  examples.split_names = artifact_utils.encode_split_names(list(split_names))
  examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
  examples_utils.set_file_format(examples, 'tfrecords_gzip')


def pack_ingest_options(options: IngestOptions) -> example_gen_pb2.CustomConfig:
  """`options` as an ExampleGen's `custom_config` (JSON in a StringValue)."""
  custom_config = example_gen_pb2.CustomConfig()
  custom_config.custom_config.Pack(
      wrappers_pb2.StringValue(value=json.dumps(dataclasses.asdict(options))))
  return custom_config


def unpack_ingest_options(exec_properties: Dict[str, Any]) -> IngestOptions:
  """The IngestOptions that `pack_ingest_options` put in the `custom_config`."""
  values = json.loads(unpack_custom_config(exec_properties, wrappers_pb2.StringValue()).value)
  values['class_names'] = tuple(values.get('class_names', ()))
  return IngestOptions(**values)


class Executor(base_beam_executor.BaseBeamExecutor):
  """Lists the data folder, then runs the ingestion pipeline on the configured runner."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    options = unpack_ingest_options(exec_properties)
    with self._make_beam_pipeline() as pipeline:  # sets the filesystems' options first
      listing = ingest_pipeline.list_data(
          exec_properties[standard_component_specs.INPUT_BASE_KEY], options,
          exec_properties.get('input_fingerprint'))  # the driver's listing, not another
      _ = pipeline | ingest_pipeline.IngestToTFRecords(listing, examples.uri, options)  # pylint: disable=no-value-for-parameter
    summary = ingest_pipeline.finish(listing, examples.uri, options)
    describe_examples(examples, SPLITS)
    examples.set_string_custom_property('label_vocabulary', ','.join(summary.class_names))
    examples.set_int_custom_property('num_skipped', summary.total_skipped)
    examples.set_int_custom_property('num_ignored', summary.total_ignored)
    examples.set_int_custom_property('num_downscaled', summary.downscaled)
    examples.set_int_custom_property('num_duplicate_groups', len(summary.duplicates))
    for split in SPLITS:
      examples.set_int_custom_property(f'num_{split}', sum(summary.written[split].values()))
    logging.info('ImageFolderExampleGen: %s, %d train, %d eval examples, %d skipped, '
                 '%d ignored, %d downscaled (see %s).',
                 summary.class_names, sum(summary.written['train'].values()),
                 sum(summary.written['eval'].values()), summary.total_skipped,
                 summary.total_ignored, summary.downscaled,
                 os.path.join(examples.uri, ingest_pipeline.QUARANTINE_FILE))


class ImageFolderExampleGen(FileBasedExampleGen):
  """Class folders of images (or image TFRecords) under `input_base` -> train/eval Examples.

  `input_base` may be a local folder or any URI Beam reads (gs://, s3://). Nothing is
  listed when the pipeline is built: layout, classes and fingerprint are decided when
  the component runs.
  """

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
  DRIVER_CLASS = ImageFolderDriver

  def __init__(self, input_base: str, eval_percent: int, num_shards: int,
               max_skipped_fraction: float, max_image_pixels: int, max_image_bytes: int,
               class_names: Optional[Sequence[str]] = None,
               max_image_side: int = IngestOptions.max_image_side):
    options = IngestOptions(
        eval_percent=eval_percent, num_shards=num_shards,
        max_skipped_fraction=max_skipped_fraction, max_image_pixels=max_image_pixels,
        max_image_bytes=max_image_bytes, max_image_side=max_image_side,
        class_names=tuple(class_names or ()))
    super().__init__(
        input_base=input_base,
        # One input "split": the whole folder (TFX's Kubeflow driver fingerprints the files
        # of class folders, */*; the local driver above reads everything).
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name='single_split', pattern='*/*')]),
        output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name='train', hash_buckets=100 - eval_percent),
            example_gen_pb2.SplitConfig.Split(name='eval', hash_buckets=eval_percent)])),
        custom_config=pack_ingest_options(options))
