"""The curated schema: inferred once, then edited by people and read by every run.

`CuratedSchemaGen` (the pipeline's SchemaGen) decides when it runs:
- `schema_file` given (`data.schema`): imports that file, as TFX's ImportSchemaGen does;
- else, if the editable copy (`<output>/schema/schema.pbtxt`) exists: imports it;
- else (the first run): infers the schema as TFX's SchemaGen does, curates it (`curate`:
  TFDV's image domain on the image), and writes it there for people to edit, with
  `inferred_schema.pbtxt` beside it (what was inferred, to diff edits against).
One component whichever it does, so an unchanged schema keeps Transform cached from the
first run to the next; `schema_fingerprint` (the edited file's sha256, '' while it is
unedited) makes an edited file re-run it instead of reusing a cached schema.
"""

import hashlib
import os

import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.schema_gen import executor as schema_gen_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact_utils, channel, component_spec, standard_artifacts
from tfx.types import standard_component_specs as specs
from tfx import v1 as tfx

from contract.features import CLASS_NAME_KEY, FILENAME_KEY, IMAGE_KEY

SCHEMA_FILE = schema_gen_executor.DEFAULT_FILE_NAME  # schema.pbtxt
INFERRED_FILE = 'inferred_schema.pbtxt'
EDITABLE_SCHEMA_KEY = 'editable_schema'
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


class SchemaFileError(ValueError):
  """A schema file that cannot be read: a user's mistake, told in one line."""


def read_schema(path: str) -> schema_pb2.Schema:
  """A schema.pbtxt file; SchemaFileError naming the file when it is not one."""
  try:
    return tfdv.load_schema_text(path)
  except Exception as e:  # pylint: disable=broad-except  # text_format raises several types
    raise SchemaFileError(f'{path} is not a readable schema.pbtxt: '
                          f'{(str(e).splitlines() or ["?"])[0]}') from e


def _sha256(path: str) -> str:
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def inferred_copy(editable_schema: str) -> str:
  """Where the first run keeps what it inferred, beside the editable file."""
  return os.path.join(os.path.dirname(editable_schema), INFERRED_FILE)


def edit_fingerprint(schema_file: str, editable_schema: str) -> str:
  """sha256 of the schema a run will import if it differs from what was inferred, else ''.
  URIs are not read when the pipeline is built: '' (their edits are seen when the data
  changes)."""
  path = schema_file or editable_schema
  if '://' in path or not os.path.isfile(path):
    return ''
  if not schema_file:
    inferred = inferred_copy(editable_schema)
    if os.path.isfile(inferred) and _sha256(inferred) == _sha256(editable_schema):
      return ''
  return _sha256(path)


class _CuratedSchemaGenExecutor(schema_gen_executor.Executor):
  """Imports the curated file, or (first run) infers, curates and writes it."""

  def Do(self, input_dict, output_dict, exec_properties):
    schema_artifact = artifact_utils.get_single_instance(output_dict[specs.SCHEMA_KEY])
    output = os.path.join(schema_artifact.uri, SCHEMA_FILE)
    editable = exec_properties[EDITABLE_SCHEMA_KEY]
    source = exec_properties.get(specs.SCHEMA_FILE_KEY) or (
        editable if tf.io.gfile.exists(editable) else '')
    if source:
      tfdv.write_schema_text(read_schema(source), output)
      schema_artifact.set_string_custom_property('imported_from', source)
      return
    super().Do(input_dict, output_dict, exec_properties)
    schema = curate(tfdv.load_schema_text(output))
    tfdv.write_schema_text(schema, output)
    tf.io.gfile.makedirs(os.path.dirname(editable))
    tfdv.write_schema_text(schema, inferred_copy(editable))
    tfdv.write_schema_text(schema, editable)
    schema_artifact.set_string_custom_property('editable_copy', editable)


class _CuratedSchemaGenSpec(specs.SchemaGenSpec):
  PARAMETERS = {**specs.SchemaGenSpec.PARAMETERS,
                specs.SCHEMA_FILE_KEY: component_spec.ExecutionParameter(type=str),
                EDITABLE_SCHEMA_KEY: component_spec.ExecutionParameter(type=str),
                SCHEMA_FINGERPRINT_KEY: component_spec.ExecutionParameter(type=str)}


class CuratedSchemaGen(tfx.components.SchemaGen):
  """SchemaGen over a curated schema: `schema_file` if given, else `editable_schema`
  (written by the first run, which infers it)."""

  SPEC_CLASS = _CuratedSchemaGenSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(_CuratedSchemaGenExecutor)

  def __init__(self, statistics: channel.BaseChannel, schema_file: str, editable_schema: str):
    spec = _CuratedSchemaGenSpec(
        statistics=statistics, infer_feature_shape=1, exclude_splits='[]',
        schema=channel.Channel(type=standard_artifacts.Schema),
        **{specs.SCHEMA_FILE_KEY: schema_file, EDITABLE_SCHEMA_KEY: editable_schema,
           SCHEMA_FINGERPRINT_KEY: edit_fingerprint(schema_file, editable_schema)})
    base_component.BaseComponent.__init__(self, spec=spec)  # pylint: disable=non-parent-init-called
