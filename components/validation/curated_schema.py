"""The curated schema: inferred once, then edited by people and imported by every run.

The first run's SchemaGen (`CuratedSchemaGen`) infers the schema as TFX's SchemaGen does,
curates it (`curate`), and writes an editable copy to `<output>/schema/schema.pbtxt` if
none is there yet; later runs import that file, or the one `data.schema` names, with
`ImportCuratedSchema` (TFX's ImportSchemaGen; a content fingerprint makes an edited file
re-run it instead of reusing a cached import).
"""

import hashlib
import os

import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.schema_gen import executor as schema_gen_executor
from tfx.components.schema_gen.import_schema_gen import executor as import_schema_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact_utils, channel, component_spec, standard_artifacts
from tfx.types import standard_component_specs as specs
from tfx import v1 as tfx

from contract.features import CLASS_NAME_KEY, FILENAME_KEY, IMAGE_KEY

SCHEMA_FILE = schema_gen_executor.DEFAULT_FILE_NAME  # schema.pbtxt
CURATED_SCHEMA_PATH_KEY = 'curated_schema_path'
SCHEMA_FINGERPRINT_KEY = 'schema_fingerprint'
# Checked span to span instead (components/validation/drift.py): a class set or file
# names that change are not schema violations.
_NO_DOMAIN = (CLASS_NAME_KEY, FILENAME_KEY)


def curate(schema: schema_pb2.Schema) -> schema_pb2.Schema:
  """TFDV's image domain on the image feature; no fixed value lists for the class name
  and the file name (inferred from one span, they would flag every new file and class)."""
  curated = schema_pb2.Schema()
  curated.CopyFrom(schema)
  for feature in curated.feature:
    if feature.name == IMAGE_KEY:
      feature.image_domain.SetInParent()
    elif feature.name in _NO_DOMAIN and feature.WhichOneof('domain_info'):
      kind = feature.WhichOneof('domain_info')
      if kind == 'domain':  # a reference to a schema-level string_domain: drop that too
        kept = [d for d in curated.string_domain if d.name != feature.domain]
        del curated.string_domain[:]
        curated.string_domain.extend(kept)
      feature.ClearField(kind)
  return curated


def read_schema(path: str) -> schema_pb2.Schema:
  """A schema.pbtxt file; ValueError naming the file when it is not one."""
  try:
    return tfdv.load_schema_text(path)
  except Exception as e:  # pylint: disable=broad-except  # text_format raises several types
    raise ValueError(f'{path} is not a readable schema.pbtxt: '
                     f'{(str(e).splitlines() or ["?"])[0]}') from e


def fingerprint(path: str) -> str:
  """sha256 of a local file's content ('' for a URI: it is not read when the pipeline is built)."""
  if '://' in path or not os.path.isfile(path):
    return ''
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


# First run: SchemaGen, curated, with an editable copy -------------------------------------

class _CuratedSchemaGenExecutor(schema_gen_executor.Executor):
  """TFX's SchemaGen, then `curate`; the first run also writes the editable copy."""

  def Do(self, input_dict, output_dict, exec_properties):
    super().Do(input_dict, output_dict, exec_properties)
    schema_artifact = artifact_utils.get_single_instance(output_dict[specs.SCHEMA_KEY])
    output = os.path.join(schema_artifact.uri, SCHEMA_FILE)
    schema = curate(tfdv.load_schema_text(output))
    tfdv.write_schema_text(schema, output)
    editable = exec_properties.get(CURATED_SCHEMA_PATH_KEY)
    if editable and not tf.io.gfile.exists(editable):
      tf.io.gfile.makedirs(os.path.dirname(editable))
      tfdv.write_schema_text(schema, editable)
      schema_artifact.set_string_custom_property('editable_copy', editable)


class _CuratedSchemaGenSpec(specs.SchemaGenSpec):
  PARAMETERS = {**specs.SchemaGenSpec.PARAMETERS,
                CURATED_SCHEMA_PATH_KEY: component_spec.ExecutionParameter(type=str)}


class CuratedSchemaGen(tfx.components.SchemaGen):
  """SchemaGen whose schema carries the image domain, with an editable copy written to
  `curated_schema_path` when there is none yet."""

  SPEC_CLASS = _CuratedSchemaGenSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(_CuratedSchemaGenExecutor)

  def __init__(self, statistics: channel.BaseChannel, curated_schema_path: str):
    spec = _CuratedSchemaGenSpec(
        statistics=statistics, infer_feature_shape=1, exclude_splits='[]',
        schema=channel.Channel(type=standard_artifacts.Schema),
        **{CURATED_SCHEMA_PATH_KEY: curated_schema_path})
    base_component.BaseComponent.__init__(self, spec=spec)  # pylint: disable=non-parent-init-called


# Later runs: the curated file, imported ---------------------------------------------------

class _ImportCuratedSchemaExecutor(import_schema_executor.Executor):
  """TFX's ImportSchemaGen executor; the artifact says which file it imported."""

  def Do(self, input_dict, output_dict, exec_properties):
    super().Do(input_dict, output_dict, exec_properties)
    artifact_utils.get_single_instance(output_dict[specs.SCHEMA_KEY]).set_string_custom_property(
        'imported_from', exec_properties[specs.SCHEMA_FILE_KEY])


class _ImportCuratedSchemaSpec(specs.ImportSchemaGenSpec):
  PARAMETERS = {**specs.ImportSchemaGenSpec.PARAMETERS,
                SCHEMA_FINGERPRINT_KEY: component_spec.ExecutionParameter(type=str)}


class ImportCuratedSchema(tfx.components.ImportSchemaGen):
  """TFX's ImportSchemaGen that runs again when the file's content changes (the stock one
  is cached on the path alone, so an edited schema would go unnoticed)."""

  SPEC_CLASS = _ImportCuratedSchemaSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(_ImportCuratedSchemaExecutor)

  def __init__(self, schema_file: str):
    spec = _ImportCuratedSchemaSpec(
        schema_file=schema_file, schema=channel.Channel(type=standard_artifacts.Schema),
        **{SCHEMA_FINGERPRINT_KEY: fingerprint(schema_file)})
    base_component.BaseComponent.__init__(self, spec=spec)  # pylint: disable=non-parent-init-called
