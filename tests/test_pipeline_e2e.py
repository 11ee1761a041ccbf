"""One real LocalDagRunner run of the whole pipeline, then a run that must not be blessed."""

import base64
import glob
import json
import os
import re
import shutil
import tempfile
import dataclasses

import numpy as np
import pytest
from PIL import Image
import tensorflow as tf
import tf_keras as keras

from bench import component_alone
from components.inference import prediction_table
from components.report import tfma_results
from components.serving import serving_config, serving_requests
from components.validation.data_validation import DataValidationError
from pipeline import local_runner
from tools import batch_predict, demo_data, predict, run_summary as report
from tools.model_dir import resolve_model_dir
from tools.class_folder import load_class_folder
from pipeline.configs import load_config
from tests.conftest import tree_digest
from trainer import tflite_export
from trainer.model import write_calibrated_weights
from trainer.preprocessing import decode_and_resize

pytestmark = pytest.mark.slow
IMAGE_SIZE = 75
# Execution type names (the SchemaGen node runs CuratedSchemaGen).
COMPONENTS = ('ImageFolderExampleGen', 'StatisticsGen', 'CuratedSchemaGen', 'ExampleValidator',
              'DataValidation', 'Transform', 'Trainer', 'Evaluator', 'ServingCanary',
              'EvaluationReport', 'AtomicPusher', 'UnlabeledImageExampleGen',
              'BoundedBulkInferrer', 'InferenceTable', 'DataInsightGen')


def _versions(serving_dir):
  return sorted(os.listdir(serving_dir), key=int)  # int(): fails on any staging leftover


@pytest.fixture(scope='module')
def first_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('e2e')
  data = str(tmp / 'digits')
  demo_data.write_digits(data, (0, 1), per_class=100)
  # Calibrated random weights: the offline stand-in for a pretrained _notop.h5 file.
  unlabeled = tmp / 'unlabeled'  # batch inference: a few digits in nested folders, a bad file
  for i, name in enumerate(sorted(os.listdir(os.path.join(data, 'one')))[:4]):
    (unlabeled / f'batch{i % 2}').mkdir(parents=True, exist_ok=True)
    shutil.copy(os.path.join(data, 'one', name), unlabeled / f'batch{i % 2}' / name)
  (unlabeled / 'batch0' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n')
  weights = str(tmp / 'inception_v3_calibrated_notop.h5')
  write_calibrated_weights(weights, load_class_folder(data, IMAGE_SIZE, per_class=16).images)
  # The default training settings (augmentation and the view cache on), TFLite int8.
  config = load_config(overrides={
      'data.path': data, 'output': str(tmp / 'run'), 'model.weights': weights,
      'model.image_size': IMAGE_SIZE, 'training.epochs': 3,
      'training.seed': 1, 'evaluation.min_accuracy': 0.6, 'inference.data': str(unlabeled),
      'export.tflite': True, 'export.tflite_quantization': 'int8'})
  local_runner.run(config)
  return config, report.latest_run_summary(config)


def test_every_component_ran_and_the_model_was_blessed(first_run):
  _, summary = first_run
  for component in COMPONENTS:
    assert summary.executions.get(component) == 'COMPLETE', summary.executions
  assert summary.blessed, summary.failures
  overall = summary.metrics['Overall']
  assert overall['sparse_categorical_accuracy'] >= 0.6
  assert overall['example_count'] == sum(
      summary.metrics[s]['example_count'] for s in summary.metrics if s.startswith('class_name:'))
  assert summary.training_curves and os.path.getsize(summary.training_curves) > 1000


def test_the_run_left_no_tfx_package_in_the_temporary_folder(first_run):
  """Beam components on a local runner skip TFX's self-packaging (49 MB of /tmp each)."""
  config, _ = first_run
  started = os.path.getmtime(config.data.path)
  packages = glob.glob(os.path.join(tempfile.gettempdir(), '*', 'build', 'tfx', 'dist', '*'))
  assert [p for p in packages if os.path.getmtime(p) >= started] == []


def test_pusher_wrote_a_versioned_saved_model(first_run):
  config, summary = first_run
  versions = _versions(config.serving_model_dir)
  assert len(versions) == 1 and versions[0].isdigit()
  assert summary.pushed_path == os.path.join(os.path.abspath(config.serving_model_dir), versions[0])
  assert os.path.isfile(os.path.join(summary.pushed_path, 'saved_model.pb'))


def test_canary_passed_and_the_pushed_version_holds_warmup_requests_that_replay(first_run):
  config, summary = first_run
  assert summary.canary.startswith('passed: loaded in '), summary.canary
  assert 'batch 1 p50' in summary.canary and f'batch {config.serving.max_batch} p50' in summary.canary
  assert 'peak RSS' in summary.canary
  assert f'Serving canary: {summary.canary}' in report.format_summary(summary)
  assert _report_json(summary)['serving_canary'] == summary.canary
  requests = list(serving_requests.read_warmup(summary.pushed_path))
  served = tf.saved_model.load(summary.pushed_path)
  assert sorted({r.model_spec.signature_name for r in requests}) == sorted(
      n for n in served.signatures)
  for request in requests:
    outputs = served.signatures[request.model_spec.signature_name](
        **serving_requests.request_tensors(request))
    np.testing.assert_allclose(outputs['probabilities'].numpy().sum(axis=1), 1.0, atol=1e-5)
  parsed = serving_config.read_serving_config(
      serving_config.config_folder(config.serving_model_dir))
  [model] = parsed[serving_config.MODELS_CONFIG].model_config_list.config
  assert dict(model.version_labels) == {'stable': int(os.path.basename(summary.pushed_path))}
  assert parsed[serving_config.BATCHING_CONFIG].max_batch_size.value == config.serving.max_batch


def _example(image: bytes) -> bytes:
  return tf.train.Example(features=tf.train.Features(feature={
      'image': tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))})).SerializeToString()


def test_both_serving_signatures_agree(first_run):
  config, _ = first_run
  model_dir = resolve_model_dir(config.serving_model_dir)
  loaded = tf.saved_model.load(model_dir)
  folder = os.path.join(config.data.path, 'one')
  images = [open(os.path.join(folder, f), 'rb').read() for f in sorted(os.listdir(folder))[:8]]
  by_bytes = loaded.signatures['serving_image_bytes'](image_bytes=tf.constant(images))
  by_example = loaded.signatures['serving_default'](
      examples=tf.constant([_example(i) for i in images]))
  probabilities = by_bytes['probabilities'].numpy()
  assert probabilities.shape == (8, 2)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
  assert ((probabilities >= 0) & (probabilities <= 1)).all()
  np.testing.assert_allclose(probabilities, by_example['probabilities'].numpy(), atol=1e-5)
  assert set(by_bytes['class_name'].numpy()) <= {b'zero', b'one'}


def test_rest_request_matches_cli_predict(first_run):
  """A TF Serving REST body, decoded as the server does, gives the CLI's numbers."""
  config, _ = first_run
  model_dir = resolve_model_dir(config.serving_model_dir)
  path = os.path.join(config.data.path, 'zero', sorted(os.listdir(os.path.join(config.data.path, 'zero')))[0])
  body = json.dumps({'signature_name': 'serving_image_bytes',
                     'instances': [{'b64': base64.b64encode(open(path, 'rb').read()).decode()}]})
  request = json.loads(body)
  signature = tf.saved_model.load(model_dir).signatures[request['signature_name']]
  instances = [base64.b64decode(i['b64']) for i in request['instances']]
  served = signature(image_bytes=tf.constant(instances))['probabilities'].numpy()[0]
  (row,) = predict.predict_files(model_dir, [path])
  np.testing.assert_allclose(served, row['probabilities'], atol=1e-6)


def test_bulk_inferrer_csv_is_what_predict_writes(first_run, tmp_path):
  """The pipeline's batch inference (BulkInferrer on the blessed model) and
  `transfer-pipeline predict` on the pushed model give the same rows."""
  config, summary = first_run
  assert summary.inference and summary.inference.endswith('(4 images, 1 skipped)')
  pipeline_rows = prediction_table.read_rows(summary.inference.split(' (')[0])
  output = tmp_path / 'predict.csv'
  assert batch_predict.command(config.serving_model_dir, [config.inference.data], str(output)) == 0
  predict_rows = {row['path']: row for row in prediction_table.read_rows(str(output))}
  assert sorted(row['path'] for row in pipeline_rows) == sorted(predict_rows)
  for row in pipeline_rows:
    expected = predict_rows[row['path']]
    if 'skipped' in expected:
      assert row == expected and row['path'].endswith('broken.png')
    else:
      assert row['class_name'] == expected['class_name']
      assert list(row['probabilities']) == list(expected['probabilities']) == ['one', 'zero']
      np.testing.assert_allclose(list(row['probabilities'].values()),
                                 list(expected['probabilities'].values()), atol=1e-5)


def test_data_insight_grad_cam_and_what_to_label_next(first_run):
  """The insight step's line, table and report section; Grad-CAM beside the mistakes;
  the batch inference's images ranked by uncertainty."""
  _, summary = first_run
  assert summary.data_insight and ' in 200 images: ' in summary.data_insight
  findings_csv = summary.data_insight.split(': ')[-1]
  with open(findings_csv) as f:
    assert f.readline().startswith('kind,file,split,class_name,score')
  assert f'Data insight: {summary.data_insight}' in report.format_summary(summary)
  page = open(summary.evaluation_report).read()
  assert 'Know your data (DataInsightGen)' in page and findings_csv in page
  assert ('Grad-CAM' in page) == bool(_report_json(summary)['misclassified'])
  with open(summary.label_next) as f:
    ranked = [line.split(',')[1] for line in f.read().splitlines()[1:]]
  classified = [r['path'] for r in prediction_table.read_rows(summary.inference.split(' (')[0])
                if 'skipped' not in r]
  assert sorted(ranked) == sorted(classified)


def test_pushed_version_has_a_tflite_model_that_agrees(first_run, tmp_path):
  """The demo model (InceptionV3@mixed7) trained with the default settings (augmented
  views through the feature cache), int8 TFLite calibrated on its train images, against
  its SavedModel: on the eval split (checked in the Trainer) and through
  `predict --model model.tflite`."""
  config, summary = first_run
  check = tflite_export.read_check(summary.pushed_path)
  assert check['quantization'] == 'int8' and check['representative_images'] == 100
  assert check['eval_split']['examples'] == summary.metrics['Overall']['example_count']
  assert check['eval_split']['top1_agreement'] >= 0.95, check
  assert summary.tflite.startswith(os.path.join(summary.pushed_path, 'model.tflite') + ' (int8')
  assert 'TFLite export' in open(summary.evaluation_report).read()
  rows = {}
  for name in ('', 'model.tflite'):
    output = tmp_path / f'{name or "saved"}.csv'
    batch_predict.command(os.path.join(summary.pushed_path, name), [config.inference.data],
                          str(output))
    rows[name] = prediction_table.read_rows(str(output))
  assert [r.get('class_name') for r in rows['model.tflite']] == [
      r.get('class_name') for r in rows['']]


@pytest.mark.parametrize('quantization, min_agreement, max_difference', [
    ('float32', 0.99, 1e-3), ('dynamic_range', 0.95, 1.0)])
def test_quantized_tflite_of_the_demo_model_agrees(first_run, tmp_path, quantization,
                                                   min_agreement, max_difference):
  """The pushed demo model converted again, against itself on the eval split: float32
  >= 0.99 top-1 agreement; dynamic range >= 0.95, as int8 in the Trainer (above): this
  model now trains with the default settings (augmented views, 3 epochs) and has near-ties
  on its ~40 eval images, one of which flips under dynamic-range quantization (0.975)."""
  config, summary = first_run
  model = keras.models.load_model(summary.pushed_path, compile=False)
  pixels = decode_and_resize(tf.constant(_eval_split(config, 'image')), IMAGE_SIZE).numpy()
  train = load_class_folder(config.data.path, IMAGE_SIZE, per_class=50).images
  check = tflite_export.write_tflite(model, ['zero', 'one'], IMAGE_SIZE, quantization,
                                     [train], [pixels], str(tmp_path))
  assert check['eval_split']['examples'] == summary.metrics['Overall']['example_count']
  assert check['eval_split']['top1_agreement'] >= min_agreement, check
  assert check['eval_split']['max_abs_probability_difference'] < max_difference, check


def _report_json(summary):
  assert summary.evaluation_report and os.path.isfile(summary.evaluation_report)
  with open(os.path.join(os.path.dirname(summary.evaluation_report), 'report.json')) as f:
    return json.load(f)


def _eval_split(config, feature):
  """`feature` (bytes) of every example in the eval split that ExampleGen wrote."""
  files = glob.glob(os.path.join(config.pipeline_root, 'ImageFolderExampleGen', 'examples',
                                 '*', 'Split-eval', '*.gz'))
  spec = {feature: tf.io.FixedLenFeature([], tf.string)}
  return [tf.io.parse_single_example(r, spec)[feature].numpy()
          for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def _eval_filenames(config):
  return [name.decode() for name in _eval_split(config, 'filename')]


def test_evaluation_report_agrees_with_tfma(first_run):
  _, summary = first_run
  data = _report_json(summary)
  matrix = np.array(data['confusion_matrix'])
  overall = summary.metrics['Overall']
  assert matrix.sum() == data['example_count'] == overall['example_count']
  assert np.trace(matrix) / matrix.sum() == pytest.approx(
      overall['sparse_categorical_accuracy'], abs=1e-6)
  for name, row in zip(data['class_names'], matrix):  # rows: true classes, TFMA's slices
    assert row.sum() == summary.metrics[f'class_name:{name}']['example_count']
  assert data['blessed'] is True and not data['failures']
  page = open(summary.evaluation_report).read()
  assert 'Blessed: yes' in page and '<table>' in page
  assert page.count('src="data:image/png;base64,') >= 2  # confusion matrix, training curves


def test_the_evaluator_replayed_alone_gives_the_run_s_metrics(first_run, tmp_path):
  """bench/component_alone.py: the Evaluator's newest execution, rerun from ML Metadata
  into another folder, blesses and measures as it did in the run."""
  config, summary = first_run
  outputs = component_alone.replay(config.metadata_path, 'Evaluator', str(tmp_path))
  assert outputs['evaluation'][0].uri.startswith(str(tmp_path))
  metrics = tfma_results.load_metrics(outputs['evaluation'][0].uri)
  assert metrics['Overall'] == pytest.approx(summary.metrics['Overall'])
  assert tfma_results.load_decision(outputs['evaluation'][0].uri, None, None).blessed
  assert os.path.exists(os.path.join(outputs['blessing'][0].uri, 'BLESSED'))


def test_report_misclassified_are_those_the_pushed_model_gets_wrong(first_run):
  """Every eval image re-predicted through the pushed model's image-bytes signature."""
  config, summary = first_run
  data = _report_json(summary)
  names = _eval_filenames(config)
  assert len(names) == data['example_count']
  model_dir = resolve_model_dir(config.serving_model_dir)
  rows = predict.predict_files(model_dir, [os.path.join(config.data.path, n) for n in names])
  predicted = {n: row for n, row in zip(names, rows)}
  wrong = {n for n, row in predicted.items() if row['class_name'] != n.split('/')[0]}
  listed = {m['filename']: m for m in data['misclassified']}
  assert set(listed) == wrong
  assert len(wrong) == data['example_count'] - np.trace(np.array(data['confusion_matrix']))
  for m in data['grid']:
    assert m['true'] == m['filename'].split('/')[0] != m['pred']
    assert predicted[m['filename']]['class_name'] == m['pred']
    assert max(predicted[m['filename']]['probabilities']) == pytest.approx(m['confidence'],
                                                                          abs=1e-4)
  confidences = [m['confidence'] for m in data['misclassified']]
  assert confidences == sorted(confidences, reverse=True)
  if not wrong:
    assert 'No misclassified images' in open(summary.evaluation_report).read()


def test_stricter_threshold_is_not_blessed_and_keeps_the_pushed_version(first_run):
  config, first_summary = first_run
  before = _versions(config.serving_model_dir)
  pushed_bytes = tree_digest(os.path.join(config.serving_model_dir, before[-1]))
  # Unreachable for this model (the first run's accuracy is below 1): bounds are fractions.
  assert first_summary.metrics['Overall']['sparse_categorical_accuracy'] < 1.0
  config.evaluation.min_accuracy = 1.0
  local_runner.run(config)
  summary = report.latest_run_summary(config)
  assert summary.blessed is False
  assert any('sparse_categorical_accuracy' in f for f in summary.failures)
  assert summary.pushed_path is None
  assert summary.canary == 'not run: the Evaluator did not bless the model'
  assert _versions(config.serving_model_dir) == before
  assert tree_digest(os.path.join(config.serving_model_dir, before[-1])) == pushed_bytes
  # The report is written for the unblessed model too, and says why.
  assert summary.executions.get('EvaluationReport') == 'COMPLETE', summary.executions
  assert summary.evaluation_report != first_summary.evaluation_report
  data = _report_json(summary)
  assert data['blessed'] is False
  assert any('sparse_categorical_accuracy' in f and 'evaluation.min_accuracy' in f
             for f in data['failures'])
  assert 'Blessed: no' in open(summary.evaluation_report).read()
  # No batch inference with a model that was not blessed, and the run says so.
  assert summary.inference == ('none: the model was not blessed, so the BulkInferrer ran no '
                               'inference')
  assert 'Batch inference: none: the model was not blessed' in report.format_summary(summary)


# Data validation: later spans against the first run's -------------------------------------

def _drifted_run(config, tmp, name, digits, per_class, scale=1.0, validation='stop'):
  """Runs the pipeline on a new folder of digits; (summary, DataValidationError or None)."""
  data = tmp / name
  for digit, count in zip(digits, per_class):
    demo_data.write_digits(str(data), (digit,), per_class=count)
  if scale != 1.0:  # the same photos at a fraction of the resolution
    for path in glob.glob(str(data / '*' / '*.png')):
      with Image.open(path) as image:
        image.resize((round(image.width * scale), round(image.height * scale))).save(path)
  config = dataclasses.replace(
      config, data=dataclasses.replace(config.data, path=str(data), validation=validation),
      inference=dataclasses.replace(config.inference, data=''),
      export=dataclasses.replace(config.export, tflite=False),
      evaluation=dataclasses.replace(config.evaluation, min_accuracy=0.0))
  try:
    local_runner.run(config)
    error = None
  except DataValidationError as e:
    error = e
  return report.latest_run_summary(config), error


def test_later_spans_are_checked_against_the_curated_schema_and_the_last_accepted_span(
    first_run, tmp_path):
  config, _ = first_run
  schema = os.path.join(config.output, 'schema', 'schema.pbtxt')
  assert 'image_domain' in open(schema).read()  # written by the first run, for editing
  before = _versions(config.serving_model_dir)
  # 1. 90% one class: the class balance drifted.
  summary, error = _drifted_run(config, tmp_path, 'imbalanced', (0, 1), (100, 11))
  assert error is not None
  [line] = error.lines
  assert line.startswith('class_name (train): L-infinity distance 0.')
  assert re.search(r'expected at most 0.2 \(data.max_class_drift\): was one [45]\d%, zero [45]\d%, '
                   r'came one \d+%, zero [89]\d%$', line), line
  assert summary.executions['DataValidation'] == 'FAILED', summary.executions
  for later in ('Transform', 'Trainer', 'Evaluator', 'AtomicPusher'):  # nothing ran after
    assert later not in summary.executions, summary.executions
  assert summary.executions['CuratedSchemaGen'] in ('COMPLETE', 'CACHED')  # the curated file
  # 2. Stopped runs never become the baseline: the same data stops again.
  _, again = _drifted_run(config, tmp_path, 'imbalanced', (0, 1), (100, 11))
  assert again is not None and again.lines == error.lines
  # 3. A class gone, a new one, and the images at a tenth of their resolution.
  _, error = _drifted_run(config, tmp_path, 'small_other_class', (0, 2), (100, 100), scale=0.1)
  lines = '\n'.join(error.lines)
  assert ('class_name (train): the class set changed, expected one, zero, came two, zero '
          '(new: two; missing: one)') in lines
  for feature in ('image_height', 'image_width'):
    assert re.search(rf'{feature} \(train\): Jensen-Shannon divergence [\d.]+ from the '
                     r'previous span, expected at most 0.3 \(data.max_size_drift\): was mean '
                     r'32 px, came mean 3 px', lines), lines
  assert _versions(config.serving_model_dir) == before  # the model in production stays
  # 4. data.validation: warn trains anyway; the report shows the anomaly and the drift, and
  # the span becomes the baseline: the same data then passes with `stop`.
  summary, error = _drifted_run(config, tmp_path, 'imbalanced', (0, 1), (100, 11),
                                validation='warn')
  assert error is None and summary.executions['Trainer'] == 'COMPLETE', summary.executions
  assert summary.data_anomalies == [line]
  assert f'  {line}' in report.format_summary(summary)
  data = _report_json(summary)['data_validation']
  assert data['anomalies'] == [line] and data['mode'] == 'warn'
  assert {d['feature']: d['exceeded'] for d in data['drift']} == {
      'class_name': True, 'image_height': False, 'image_width': False}
  assert 'Data validation' in open(summary.evaluation_report).read()
  summary, error = _drifted_run(config, tmp_path, 'imbalanced', (0, 1), (100, 11))
  assert error is None and summary.data_anomalies == []
  assert summary.executions['DataValidation'] == 'COMPLETE', summary.executions
