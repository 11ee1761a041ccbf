"""EvaluationReport: an HTML page per run that says how good the model is and why it
was (not) blessed.

It runs after the Pusher and consumes only outputs that every run produces (the
blessing says BLESSED or NOT_BLESSED; the PushedModel artifact says whether it was
pushed), so it also runs, and is most useful, when the model is not blessed and the
Pusher pushes nothing. Running after the Pusher means a failing report can never
stop a blessed model from being pushed.
"""

import dataclasses
import heapq
import html
import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.evaluator.baseline_check import BASELINE_NOT_USED
from components.pusher.atomic_pusher import UNCHANGED_AS
from components.report import report_html
from components.report.tfma_results import load_confusion_matrix, load_decision, load_metrics
from components.example_gen.ingest_summary import VOCABULARY_FILE
from components.report.report_html import Prediction
from components.validation.data_validation import DataValidationResult, load_result
from contract.features import FILENAME_KEY, IMAGE_KEY, LABEL_KEY
from trainer import augment, eval_predictions, plots, tflite_export, warm_start
from trainer.preprocessing import decode_and_resize, pixels_to_bytes

HTML_FILE = 'report.html'
JSON_FILE = 'report.json'
SIGNATURE = 'serving_default'
_PARSE_SPEC = {
    LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    IMAGE_KEY: tf.io.FixedLenFeature([], tf.string, default_value=''),
    FILENAME_KEY: tf.io.FixedLenFeature([], tf.string, default_value=''),
}


class ModelReport(tfx.dsl.Artifact):
  """A human-readable evaluation report: `report.html` and its data, `report.json`."""
  # Namespaced as Kubeflow Pipelines v2 requires of custom artifact types.
  TYPE_NAME = 'transfer_pipeline.ModelReport'


# Predictions on the eval split ----------------------------------------------------------

def split_files(examples: tfx.dsl.Artifact, split: str) -> List[str]:
  folder = artifact_utils.get_split_uri([examples], split)
  files = sorted(tf.io.gfile.glob(os.path.join(folder, '*')))
  if not files:
    raise ValueError(f'No examples in split {split!r} ({folder}): nothing to report on.')
  return files


def _dataset(files: List[str], batch_size: int) -> tf.data.Dataset:
  gzipped = all(f.endswith('.gz') for f in files)
  return tf.data.TFRecordDataset(files, compression_type='GZIP' if gzipped else '').batch(
      batch_size)


def predict_split(model_dir: str, files: List[str], batch_size: int,
                  keep_images: int) -> Tuple[List[Prediction], Dict[int, str], int]:
  """Runs the serving signature over every example; keeps the images of the
  `keep_images` most confidently misclassified. Also returns the class names the
  model output and its number of classes."""
  signature = tf.saved_model.load(model_dir).signatures[SIGNATURE]
  predictions, names, kept, num_classes = [], {}, [], 0
  for serialized in _dataset(files, batch_size):
    outputs = signature(examples=serialized)
    features = tf.io.parse_example(serialized, _PARSE_SPEC)
    probabilities = outputs['probabilities'].numpy()
    num_classes = probabilities.shape[1]
    batch = zip(probabilities, outputs['class_name'].numpy(), features[LABEL_KEY].numpy(),
                features[FILENAME_KEY].numpy(), features[IMAGE_KEY].numpy())
    for row, name, label, filename, image in batch:
      predicted = int(row.argmax())
      names[predicted] = name.decode()
      prediction = Prediction(filename=filename.decode(), label=int(label),
                              predicted=predicted, confidence=float(row[predicted]))
      if not prediction.correct and keep_images > 0:
        _keep_image(kept, prediction, image, keep_images)
      predictions.append(prediction)
  return predictions, names, num_classes


def match_trainer_predictions(saved: eval_predictions.EvalPredictions, files: List[str],
                              batch_size: int,
                              keep_images: int) -> Tuple[List[Prediction], int]:
  """The Trainer's eval predictions for every raw eval example, found by the image key
  of Transform's decode-and-resize of its image (no model runs); keeps the images of the
  `keep_images` most confidently misclassified. Also returns the number of classes."""
  predictions, kept, num_classes = [], [], 0
  for serialized in _dataset(files, batch_size):
    features = tf.io.parse_example(serialized, _PARSE_SPEC)
    keys = augment.image_keys(pixels_to_bytes(decode_and_resize(features[IMAGE_KEY],
                                                                saved.image_size)))
    batch = zip(keys.numpy(), features[LABEL_KEY].numpy(), features[FILENAME_KEY].numpy(),
                features[IMAGE_KEY].numpy())
    for key, label, filename, image in batch:
      if int(key) not in saved.by_key:
        raise ValueError(f'The Trainer wrote no prediction for eval example '
                         f'{filename.decode(errors="replace")!r}: was it trained on another split?')
      probabilities = saved.by_key[int(key)][1]
      num_classes, predicted = len(probabilities), int(np.argmax(probabilities))
      prediction = Prediction(filename=filename.decode(), label=int(label),
                              predicted=predicted, confidence=float(probabilities[predicted]))
      if not prediction.correct and keep_images > 0:
        _keep_image(kept, prediction, image, keep_images)
      predictions.append(prediction)
  return predictions, num_classes


class _Backwards(str):
  """A filename that sorts backwards: on equal confidence the min-heap drops the later
  name first, matching `rank_misclassified`'s order (ties by filename)."""

  def __lt__(self, other):
    return str.__gt__(self, other)


def _keep_image(kept: list, prediction: Prediction, image: bytes, limit: int) -> None:
  """Holds images only for the `limit` most confident mistakes (a min-heap on confidence)."""
  prediction.image = image
  entry = (prediction.confidence, _Backwards(prediction.filename), id(prediction), prediction)
  if len(kept) < limit:
    heapq.heappush(kept, entry)
  elif kept[0][:2] < entry[:2]:
    heapq.heapreplace(kept, entry)[-1].image = None
  else:
    prediction.image = None


def class_names(examples: tfx.dsl.Artifact, num_classes: int,
                seen: Dict[int, str]) -> List[str]:
  """label_vocabulary.txt of the examples; else the model's own class_name outputs."""
  path = os.path.join(examples.uri, VOCABULARY_FILE)
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      names = [line.strip() for line in f if line.strip()]
    if len(names) == num_classes or not num_classes:
      return names
  return [seen.get(i, str(i)) for i in range(num_classes)]


def training_curves(model_run_uri: str) -> Optional[bytes]:
  """The Trainer's training_curves.png; else the same plot drawn from its history.json
  (without the fine-tuning marker, which history.json does not record)."""
  png = os.path.join(model_run_uri, 'training_curves.png')
  if tf.io.gfile.exists(png):
    with tf.io.gfile.GFile(png, 'rb') as f:
      return f.read()
  history_path = os.path.join(model_run_uri, 'history.json')
  if tf.io.gfile.exists(history_path):
    with tf.io.gfile.GFile(history_path) as f:
      history = json.load(f)
    if isinstance(history, dict) and history.get('loss'):
      return report_html.figure_png(plots.training_curves_figure(history))
  return None


TUNER_RESULTS_FILE = 'tuner_results.json'


def load_trials(tuner_results_uri: str) -> List[Dict]:
  """The Tuner's completed trials, best first (the first one's values went to the
  Trainer): trial_id, score (val accuracy), the hyperparameters, trial_seconds."""
  path = os.path.join(tuner_results_uri, TUNER_RESULTS_FILE)
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


# The component --------------------------------------------------------------------------

def _blessing_info(blessing: tfx.dsl.Artifact) -> Tuple[Optional[bool], Optional[str]]:
  blessed = (blessing.get_int_custom_property('blessed') == 1
             if blessing.has_custom_property('blessed') else None)
  baseline = (blessing.get_string_custom_property('baseline_model')
              if blessing.has_custom_property('baseline_model') else None)
  return blessed, baseline


@tfx.dsl.components.component
def EvaluationReport(
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    evaluation: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelEvaluation],
    blessing: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelBlessing],
    model_run: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ModelRun],
    pushed_model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.PushedModel],
    report: tfx.dsl.components.OutputArtifact[ModelReport],
    tuner_results: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.TunerResults] = None,
    infra_blessing: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.InfraBlessing] = None,
    data_validation: tfx.dsl.components.InputArtifact[DataValidationResult] = None,
    split: tfx.dsl.components.Parameter[str] = 'eval',
    max_misclassified: tfx.dsl.components.Parameter[int] = 16,
    batch_size: tfx.dsl.components.Parameter[int] = 32,
) -> None:
  """Writes `report.html` (metrics, decision, confusion matrix, training curves, the most
  confidently misclassified images) and `report.json` into the `report` artifact."""
  model_dir = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
  files = split_files(examples, split)
  saved = eval_predictions.load(model_run.uri)
  if saved:  # written once by the Trainer: no third pass of the model over the eval split
    predictions, num_classes = match_trainer_predictions(saved, files, batch_size,
                                                         max_misclassified)
    seen = {}
  else:
    predictions, seen, num_classes = predict_split(model_dir, files, batch_size,
                                                   max_misclassified)
  names = class_names(examples, num_classes, seen)
  matrix = load_confusion_matrix(evaluation.uri, len(names))
  if matrix is None:
    matrix = report_html.confusion_matrix([p.label for p in predictions],
                                          [p.predicted for p in predictions], len(names))
  misclassified = report_html.rank_misclassified(predictions)
  decision = load_decision(evaluation.uri, *_blessing_info(blessing))
  if pushed_model.has_custom_property('pushed_destination'):
    decision.pushed_to = pushed_model.get_string_custom_property('pushed_destination')
  if pushed_model.has_custom_property(UNCHANGED_AS):
    decision.unchanged_as = pushed_model.get_string_custom_property(UNCHANGED_AS)
  if blessing.has_custom_property(BASELINE_NOT_USED):
    decision.baseline_not_used = blessing.get_string_custom_property(BASELINE_NOT_USED)
  metrics = load_metrics(evaluation.uri)
  tflite = tflite_export.read_check(model_dir)
  extra = [('TFLite export', f'<p>{html.escape(tflite["file"])}: '
                                  f'{html.escape(tflite_export.describe(tflite))}</p>')
           ] if tflite else []
  canary = (infra_blessing.get_string_custom_property('canary')
            if infra_blessing and infra_blessing.has_custom_property('canary') else '')
  if canary:  # the serving canary's checks (components/serving/serving_canary.py)
    extra.append(('Serving canary', f'<p>{html.escape(canary)}</p>'))
  started = warm_start.read_decision(model_run.uri)
  if started:
    extra.append(('Training start', f'<p>{html.escape(started.line())}</p>'))
  trials = load_trials(tuner_results.uri) if tuner_results else []
  if trials:
    extra.append(('Hyperparameter search (Tuner)', report_html.trials_table(
        trials, trials[0]['trial_id'])))
  validation = load_result(data_validation.uri) if data_validation else {}
  if validation:
    extra.append(('Data validation (schema and drift from the last accepted span)',
                  report_html.data_validation_html(validation)))
  page = report_html.render_html(
      'Evaluation report', decision, metrics, matrix, names, misclassified,
      max_misclassified, training_curves(model_run.uri), model_uri=model_dir,
      extra_sections=extra)
  tf.io.gfile.makedirs(report.uri)
  with tf.io.gfile.GFile(os.path.join(report.uri, HTML_FILE), 'w') as f:
    f.write(page)
  with tf.io.gfile.GFile(os.path.join(report.uri, JSON_FILE), 'w') as f:
    json.dump({**report_html.report_json(matrix, names, misclassified, max_misclassified,
                                         decision, metrics), 'tflite': tflite,
               'tuning_trials': trials, 'serving_canary': canary,
               'warm_start': dataclasses.asdict(started) if started else None,
               'data_validation': validation}, f, indent=2)
  report.set_int_custom_property('blessed', int(decision.blessed))
  report.set_int_custom_property('num_misclassified', len(misclassified))
  print(f'EvaluationReport: {os.path.join(report.uri, HTML_FILE)} '
        f'({len(predictions)} eval examples, {len(misclassified)} misclassified)')
