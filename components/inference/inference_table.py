"""InferenceTable: the BulkInferrer's InferenceResult as the CSV of `transfer-pipeline predict`.

One row per file of the inference folder: the BulkInferrer's predictions (read from its
PredictionLogs) and the files the unlabeled ExampleGen skipped, with their reason. When
the Evaluator did not bless the model, the BulkInferrer runs no inference; this
component then writes no CSV and records `blessed = 0`, which `run` reports.
"""

import os
from typing import Iterator, List, Tuple

import numpy as np
import tensorflow as tf
from tfx import v1 as tfx
from tfx.utils import path_utils
from tensorflow_serving.apis import prediction_log_pb2

from components.inference import prediction_table, uncertainty
from components.example_gen.unlabeled_images import read_skipped
from trainer import export
from contract.features import FILENAME_KEY

CSV_FILE = 'predictions.csv'


class PredictionTable(tfx.dsl.Artifact):
  """Batch predictions as a table: `predictions.csv` (path, class_name, one column per
  class, skipped), and `uncertain.csv` (the images ranked most uncertain first)."""
  TYPE_NAME = 'transfer_pipeline.PredictionTable'


def read_prediction_logs(inference_uri: str) -> Iterator[Tuple[str, np.ndarray]]:
  """(filename, probabilities) per PredictionLog the BulkInferrer wrote."""
  files = sorted(tf.io.gfile.glob(os.path.join(inference_uri, '*.gz')))
  for record in (tf.data.TFRecordDataset(files, compression_type='GZIP') if files else []):
    log = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log
    (example,) = log.request.inputs['examples'].string_val
    feature = tf.train.Example.FromString(example).features.feature[FILENAME_KEY]
    filename = feature.bytes_list.value[0].decode() if feature.bytes_list.value else ''
    yield filename, tf.make_ndarray(log.response.outputs['probabilities']).reshape(-1)


def write_inference_csv(inference_uri: str, examples_uri: str, class_names: List[str],
                        path: str) -> Tuple[int, int]:
  """Writes the CSV sorted by path; returns (rows predicted, rows skipped). `class_names`
  may be empty (a model exported without them): then class_0, class_1, ..."""
  predictions = list(read_prediction_logs(inference_uri))  # one small row per image
  if predictions:
    class_names = export.fallback_class_names(len(predictions[0][1]), class_names)
  skipped = read_skipped(examples_uri)
  rows = sorted([(p, probabilities, None) for p, probabilities in predictions] +
                [(p, None, reason) for p, reason in skipped], key=lambda row: row[0])
  with tf.io.gfile.GFile(path, 'w') as out:
    writer = prediction_table.PredictionWriter(out, class_names)
    for filename, probabilities, reason in rows:
      if reason is None:
        writer.predicted(filename, probabilities)
      else:
        writer.skipped(filename, reason)
  return len(predictions), len(skipped)


@tfx.dsl.components.component
def InferenceTable(
    inference_result: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.InferenceResult],
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    blessing: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    table: tfx.dsl.components.OutputArtifact[PredictionTable],
) -> None:
  """Writes `predictions.csv` into `table` if the model was blessed."""
  blessed = blessing.get_int_custom_property('blessed') == 1
  table.set_int_custom_property('blessed', int(blessed))
  if not blessed:
    print('InferenceTable: the model was not blessed, so the BulkInferrer ran no inference.')
    return
  model_dir = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
  names = export.read_class_names(model_dir)
  tf.io.gfile.makedirs(table.uri)
  csv_path = os.path.join(table.uri, CSV_FILE)
  predicted, skipped = write_inference_csv(inference_result.uri, examples.uri, names, csv_path)
  rows = list(read_prediction_logs(inference_result.uri))
  with tf.io.gfile.GFile(os.path.join(table.uri, uncertainty.RANK_FILE), 'w') as out:
    uncertainty.write_ranking(out, rows, export.fallback_class_names(
        len(rows[0][1]) if rows else 0, names))
  table.set_int_custom_property('num_predicted', predicted)
  table.set_int_custom_property('num_skipped', skipped)
  print(f'InferenceTable: {csv_path} ({predicted} images, {skipped} skipped); '
        f'what to label next: {uncertainty.RANK_FILE}')
