"""DataValidation: the gate between the data and the Trainer.

It reads the ExampleValidator's anomalies (each split against the curated schema) and
compares this span's statistics with those of the last accepted span (`drift.compare`:
class shares, stored image height and width). Any anomaly stops the run with
`DataValidationError` (`data.validation: stop`, the default): the component fails, so
nothing after it (Transform, Trainer, Pusher) runs and the model in production stays.
With `data.validation: warn` the anomalies are recorded and the run goes on.

Its `accepted_statistics` output (a copy of the statistics, published only when the run
goes on) is the next run's baseline: a run that stopped never becomes the baseline, so
running again on the same data stops again.
"""

import dataclasses
import json
import os
from typing import Dict, List, Optional

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx import v1 as tfx
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils

from components.validation import drift
from components.validation.curated_schema import SCHEMA_FILE

RESULT_FILE = 'validation.json'
ANOMALIES_FILE = 'SchemaDiff.pb'  # ExampleValidator's file per split
DRIFT_SPLIT = 'train'  # the eval split is too small to compare shares reliably
MODES = ('stop', 'warn')
NUM_ANOMALIES = 'num_anomalies'  # on the validation result and the accepted statistics


def anomaly_count(n: int) -> str:
  """'1 anomaly', '3 anomalies'."""
  return f'{n} anomal{"y" if n == 1 else "ies"}'


class DataValidationError(ValueError):
  """The new data has anomalies: `lines` holds one line per anomaly."""

  def __init__(self, lines: List[str]):
    super().__init__(
        f'Data validation found {anomaly_count(len(lines))}: '
        'the run stopped before training (nothing trained or pushed). Fix the data, edit '
        'the schema, or set data.validation: warn (--validation warn) to train anyway.')
    self.lines = list(lines)


class DataValidationResult(tfx.dsl.Artifact):
  """`validation.json`: the anomalies and the span-to-span drift measurements."""
  TYPE_NAME = 'transfer_pipeline.DataValidation'


def load_result(uri: str) -> Dict:
  """The `validation.json` a DataValidation artifact holds ({} if none)."""
  path = os.path.join(uri, RESULT_FILE)
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _schema_anomalies(anomalies: tfx.dsl.Artifact) -> Dict[str, anomalies_pb2.Anomalies]:
  by_split = {}
  for split in artifact_utils.decode_split_names(anomalies.split_names):
    path = os.path.join(artifact_utils.get_split_uri([anomalies], split), ANOMALIES_FILE)
    with tf.io.gfile.GFile(path, 'rb') as f:
      by_split[split] = anomalies_pb2.Anomalies.FromString(f.read())
  return by_split


def _read_schema(schema: tfx.dsl.Artifact) -> schema_pb2.Schema:
  import tensorflow_data_validation as tfdv  # pylint: disable=g-import-not-at-top
  return tfdv.load_schema_text(os.path.join(schema.uri, SCHEMA_FILE))


def _copy_statistics(source: tfx.dsl.Artifact, target: tfx.dsl.Artifact) -> None:
  target.split_names = source.split_names
  for split in artifact_utils.decode_split_names(source.split_names):
    from_dir = artifact_utils.get_split_uri([source], split)
    to_dir = artifact_utils.get_split_uri([target], split)
    tf.io.gfile.makedirs(to_dir)
    for name in tf.io.gfile.listdir(from_dir):
      tf.io.gfile.copy(os.path.join(from_dir, name), os.path.join(to_dir, name), overwrite=True)
  if source.has_property('span'):
    target.span = source.span


def validate(statistics: tfx.dsl.Artifact, schema: tfx.dsl.Artifact,
             anomalies: tfx.dsl.Artifact, previous: Optional[tfx.dsl.Artifact],
             max_class_drift: float, max_size_drift: float) -> Dict:
  """The result `validation.json` holds: anomaly lines, drift measurements, a note."""
  curated = _read_schema(schema)
  lines = [line for split, found in _schema_anomalies(anomalies).items()
           for line in drift.schema_lines(found, split, curated)]
  drifts: List[drift.Drift] = []
  note = ''
  splits = artifact_utils.decode_split_names(statistics.split_names)
  if previous is None:
    note = 'no earlier accepted span: nothing to compare with (this span becomes the baseline)'
  elif DRIFT_SPLIT not in splits or DRIFT_SPLIT not in artifact_utils.decode_split_names(
      previous.split_names):
    note = f'no {DRIFT_SPLIT} split in both spans: drift not checked'
  else:
    current_stats = stats_artifact_utils.load_statistics(statistics, DRIFT_SPLIT).proto()
    previous_stats = stats_artifact_utils.load_statistics(previous, DRIFT_SPLIT).proto()
    drifts = drift.compare(current_stats, previous_stats, max_class_drift, max_size_drift)
    changed = drift.class_set_change(current_stats, previous_stats, DRIFT_SPLIT)
    lines += ([changed] if changed else []) + drift.drift_lines(drifts, DRIFT_SPLIT)
    compared = {d.feature for d in drifts}
    missing = [f for f in drift.SIZE_FEATURES if f not in compared]
    if missing:
      note = f'not compared (absent from one of the spans): {", ".join(missing)}'
  return {'anomalies': lines,
          'drift': [{**dataclasses.asdict(d), 'split': DRIFT_SPLIT, 'exceeded': d.exceeded}
                    for d in drifts],
          'previous_statistics': previous.uri if previous is not None else None,
          'note': note}


@tfx.dsl.components.component
def DataValidation(
    statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    validation: tfx.dsl.components.OutputArtifact[DataValidationResult],
    accepted_statistics: tfx.dsl.components.OutputArtifact[
        tfx.types.standard_artifacts.ExampleStatistics],
    previous_statistics: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ExampleStatistics] = None,
    mode: tfx.dsl.components.Parameter[str] = 'stop',
    max_class_drift: tfx.dsl.components.Parameter[float] = 0.2,
    max_size_drift: tfx.dsl.components.Parameter[float] = 0.3,
) -> None:
  """Writes `validation.json`; raises DataValidationError on anomalies when `mode` is
  'stop'; otherwise publishes this span's statistics as the next run's baseline."""
  result = validate(statistics, schema, anomalies, previous_statistics, max_class_drift,
                    max_size_drift)
  result['mode'] = mode
  tf.io.gfile.makedirs(validation.uri)
  with tf.io.gfile.GFile(os.path.join(validation.uri, RESULT_FILE), 'w') as f:
    json.dump(result, f, indent=2)
  for line in result['anomalies']:
    print(f'DataValidation anomaly: {line}')
  if result['anomalies'] and mode == 'stop':
    raise DataValidationError(result['anomalies'])
  validation.set_int_custom_property(NUM_ANOMALIES, len(result['anomalies']))
  _copy_statistics(statistics, accepted_statistics)
  # Let through with anomalies (mode 'warn'): the resolver makes such a span its own
  # baseline when the same statistics come again (components/resolvers).
  accepted_statistics.set_int_custom_property(NUM_ANOMALIES, len(result['anomalies']))
