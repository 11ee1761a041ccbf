"""ImageFolderExampleGen: TFX's file-based ExampleGen over a folder of images, on Beam.

A `FileBasedExampleGen` with its own driver and executor:
- the driver resolves the newest span when `input_base` holds TFX's span specs
  ({SPAN}, {SPAN:4}, {VERSION}, {YYYY}{MM}{DD}; components/example_gen/spans.py), then
  fingerprints every file under that folder when the component runs (as TFX's own
  driver does for the files of its split patterns, but recursively and on any Beam
  filesystem), so a changed image re-runs ExampleGen and everything after it;
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
from tfx.components.example_gen import driver, input_processor, utils
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.example_gen import image_listing, ingest_pipeline, spans
from components.example_gen.image_listing import SPLITS
from contract.settings import IngestOptions


class _FolderInputProcessor(input_processor.FileBasedInputProcessor):
  """Resolves the newest span (TFX's own functions), then fingerprints everything below
  its folder (any depth, any Beam filesystem)."""

  def resolve_span_and_version(self):
    # Outside a Beam pipeline: filesystems (s3://) take their settings from the standard
    # environment (AWS_ENDPOINT_URL, credentials), not from beam_pipeline_args.
    FileSystems.set_options(PipelineOptions())
    (split,) = self._splits
    if not spans.has_specs(split.pattern):  # one folder (the unlabeled ExampleGen's too)
      self._fingerprint = image_listing.fingerprint(self._input_base_uri)
      return 0, None
    span = spans.resolve(self._input_base_uri, split.pattern, self._range_config)
    logging.info('ImageFolderExampleGen: newest span %d%s: %s.', span.number,
                 '' if span.version is None else f' version {span.version}', span.folder)
    self._fingerprint = image_listing.fingerprint(span.folder)
    return span.number, span.version


class ImageFolderDriver(driver.FileBasedDriver):
  """The file-based ExampleGen driver: TFX's span resolution, a recursive fingerprint."""

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


# custom_config key of the ingestion code's fingerprint (pipeline/fingerprints.py): only
# there to make the cache key see the code.
CODE_FINGERPRINT = 'code_fingerprint'


def pack_ingest_options(options: IngestOptions,
                        code_fingerprint: str = '') -> example_gen_pb2.CustomConfig:
  """`options` (and the code's fingerprint) as an ExampleGen's `custom_config` (JSON in a
  StringValue)."""
  values = dataclasses.asdict(options)
  if code_fingerprint:
    values[CODE_FINGERPRINT] = code_fingerprint
  custom_config = example_gen_pb2.CustomConfig()
  custom_config.custom_config.Pack(wrappers_pb2.StringValue(value=json.dumps(values)))
  return custom_config


def unpack_ingest_options(exec_properties: Dict[str, Any]) -> IngestOptions:
  """The IngestOptions that `pack_ingest_options` put in the `custom_config`."""
  values = json.loads(unpack_custom_config(exec_properties, wrappers_pb2.StringValue()).value)
  values.pop(CODE_FINGERPRINT, None)
  values['class_names'] = tuple(values.get('class_names', ()))
  return IngestOptions(**values)


def read_spans(exec_properties: Dict[str, Any], options: IngestOptions) -> List[spans.Span]:
  """The span folders this execution ingests: the one the driver resolved (TFX's
  `input_config`, `span`, `version`), or with `options.ingest_spans` > 1 the rolling
  window of spans that ends there (oldest first)."""
  input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
  input_config = example_gen_pb2.Input()
  proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                            input_config)
  number = int(exec_properties.get(utils.SPAN_PROPERTY_NAME) or 0)
  version = exec_properties.get(utils.VERSION_PROPERTY_NAME)
  newest = spans.Span(number, None if version is None else int(version),
                      spans.folder_of(input_base, input_config.splits[0].pattern))
  if options.ingest_spans <= 1 or not options.span_pattern:
    return [newest]
  window = spans.window(input_base, options.span_pattern, number, options.ingest_spans)
  return [s for s in window if s.number != number] + [newest]


def set_span_properties(examples: types.Artifact, span_folders: List[spans.Span]) -> None:
  """The newest span and version as TFX's typed properties (which its span resolvers
  read) and as custom ones (which its ExampleGen driver writes); `spans` lists them all."""
  newest = span_folders[-1]
  examples.span = newest.number
  examples.set_int_custom_property(utils.SPAN_PROPERTY_NAME, newest.number)
  if newest.version is not None:
    examples.version = newest.version
    examples.set_int_custom_property(utils.VERSION_PROPERTY_NAME, newest.version)
  examples.set_string_custom_property('spans', ','.join(str(s.number) for s in span_folders))


class Executor(base_beam_executor.BaseBeamExecutor):
  """Lists the data folder, then runs the ingestion pipeline on the configured runner."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    options = unpack_ingest_options(exec_properties)
    span_folders = read_spans(exec_properties, options)
    with self._make_beam_pipeline() as pipeline:  # sets the filesystems' options first
      fingerprint = exec_properties.get('input_fingerprint')  # reuse the driver's listing
      listings = spans.same_classes(
          [(span, ingest_pipeline.list_data(span.folder, options, fingerprint))
           for span in span_folders])
      span_folders = [span for span, _ in listings]
      listing = spans.merged_listing(
          exec_properties[standard_component_specs.INPUT_BASE_KEY], listings)
      _ = pipeline | ingest_pipeline.IngestToTFRecords(listing, examples.uri, options)  # pylint: disable=no-value-for-parameter
    summary = ingest_pipeline.finish(listing, examples.uri, options)
    describe_examples(examples, SPLITS)
    set_span_properties(examples, span_folders)
    examples.set_string_custom_property('label_vocabulary', ','.join(summary.class_names))
    examples.set_int_custom_property('num_skipped', summary.total_skipped)
    examples.set_int_custom_property('num_ignored', summary.total_ignored)
    examples.set_int_custom_property('num_downscaled', summary.downscaled)
    examples.set_int_custom_property('num_duplicate_groups', len(summary.duplicates))
    for split in SPLITS:
      examples.set_int_custom_property(f'num_{split}', sum(summary.written[split].values()))
    logging.info('ImageFolderExampleGen: ingested %s.', spans.describe(span_folders))
    logging.info('ImageFolderExampleGen: %s, %d train, %d eval examples, %d skipped, '
                 '%d ignored, %d downscaled (see %s).',
                 summary.class_names, sum(summary.written['train'].values()),
                 sum(summary.written['eval'].values()), summary.total_skipped,
                 summary.total_ignored, summary.downscaled,
                 os.path.join(examples.uri, ingest_pipeline.QUARANTINE_FILE))


class ImageFolderExampleGen(FileBasedExampleGen):
  """Class folders of images (or image TFRecords) under `input_base` -> train/eval Examples.

  `input_base` may be a local folder or any URI Beam reads (gs://, s3://), with span
  specs or without (span 0). The Examples artifact carries the span and version as
  TFX's typed and custom properties. Nothing is
  listed when the pipeline is built: layout, classes and fingerprint are decided when
  the component runs.
  """

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
  DRIVER_CLASS = ImageFolderDriver

  def __init__(self, input_base: str, eval_percent: int, num_shards: int,
               max_skipped_fraction: float, max_image_pixels: int, max_image_bytes: int,
               class_names: Optional[Sequence[str]] = None,
               max_image_side: int = IngestOptions.max_image_side, code_fingerprint: str = '',
               ingest_spans: int = 1):
    """`input_base` may hold {SPAN}, {SPAN:n}, {VERSION} or {YYYY}{MM}{DD} (TFX's span
    specs): the newest span folder is read. `ingest_spans` > 1 ingests the newest N
    spans in this one artifact (where no span resolver can run, e.g. Kubeflow V2)."""
    base, pattern = spans.split_path(input_base)
    options = IngestOptions(
        eval_percent=eval_percent, num_shards=num_shards,
        max_skipped_fraction=max_skipped_fraction, max_image_pixels=max_image_pixels,
        max_image_bytes=max_image_bytes, max_image_side=max_image_side,
        class_names=tuple(class_names or ()),
        span_pattern='' if pattern == spans.UNSPANNED_PATTERN else pattern,
        ingest_spans=ingest_spans)
    super().__init__(
        input_base=base,
        # One input "split": the whole folder, or with span specs 'span-{SPAN}/*' (TFX's
        # drivers resolve the span; its Kubeflow driver fingerprints the entries this
        # glob matches, the local driver above everything below the folder).
        input_config=example_gen_pb2.Input(splits=[spans.input_split(pattern)]),
        output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name='train', hash_buckets=100 - eval_percent),
            example_gen_pb2.SplitConfig.Split(name='eval', hash_buckets=eval_percent)])),
        custom_config=pack_ingest_options(options, code_fingerprint))
