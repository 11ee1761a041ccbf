"""One real LocalDagRunner run of the whole pipeline, then a run that must not be blessed."""

import base64
import glob
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from components.inference import prediction_table
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
COMPONENTS = ('ImageFolderExampleGen', 'StatisticsGen', 'SchemaGen', 'Transform', 'Trainer',
              'Evaluator', 'EvaluationReport', 'AtomicPusher', 'UnlabeledImageExampleGen',
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
  config = load_config(overrides={
      'data.path': data, 'output': str(tmp / 'run'), 'model.weights': weights,
      'model.image_size': IMAGE_SIZE, 'training.epochs': 3, 'training.augment': False,
      'training.seed': 1, 'evaluation.min_accuracy': 0.6, 'inference.data': str(unlabeled),
      'export.tflite': True})
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


def test_pusher_wrote_a_versioned_saved_model(first_run):
  config, summary = first_run
  versions = _versions(config.serving_model_dir)
  assert len(versions) == 1 and versions[0].isdigit()
  assert summary.pushed_path == os.path.join(os.path.abspath(config.serving_model_dir), versions[0])
  assert os.path.isfile(os.path.join(summary.pushed_path, 'saved_model.pb'))


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
  """The demo model (InceptionV3@mixed7, float32 TFLite) against its SavedModel: on the
  eval split (checked in the Trainer) and through `predict --model model.tflite`."""
  config, summary = first_run
  check = tflite_export.read_check(summary.pushed_path)
  assert check['eval_split']['examples'] == summary.metrics['Overall']['example_count']
  assert check['eval_split']['top1_agreement'] >= 0.99, check
  assert check['eval_split']['max_abs_probability_difference'] < 1e-3, check
  assert summary.tflite.startswith(os.path.join(summary.pushed_path, 'model.tflite') + ' (float32')
  assert 'TFLite export' in open(summary.evaluation_report).read()
  rows = {}
  for name in ('', 'model.tflite'):
    output = tmp_path / f'{name or "saved"}.csv'
    batch_predict.command(os.path.join(summary.pushed_path, name), [config.inference.data],
                          str(output))
    rows[name] = prediction_table.read_rows(str(output))
  assert [r.get('class_name') for r in rows['model.tflite']] == [
      r.get('class_name') for r in rows['']]


@pytest.mark.parametrize('quantization, min_agreement', [
    ('dynamic_range', 0.99), ('int8', 0.95)])
def test_quantized_tflite_of_the_demo_model_agrees(first_run, tmp_path, quantization,
                                                   min_agreement):
  """The pushed demo model converted with quantization, against itself on the eval split:
  dynamic range >= 0.99 top-1 agreement (the issue's bound); int8, calibrated on train
  images, measured here at 1.000 and held to 0.95 (README: TFLite export)."""
  config, summary = first_run
  model = keras.models.load_model(summary.pushed_path, compile=False)
  pixels = decode_and_resize(tf.constant(_eval_split(config, 'image')), IMAGE_SIZE).numpy()
  train = load_class_folder(config.data.path, IMAGE_SIZE, per_class=50).images
  check = tflite_export.write_tflite(model, ['zero', 'one'], IMAGE_SIZE, quantization,
                                     [train], [pixels], str(tmp_path))
  assert check['eval_split']['examples'] == summary.metrics['Overall']['example_count']
  assert check['eval_split']['top1_agreement'] >= min_agreement, check


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
  config.evaluation.min_accuracy = 1.01
  local_runner.run(config)
  summary = report.latest_run_summary(config)
  assert summary.blessed is False
  assert any('sparse_categorical_accuracy' in f for f in summary.failures)
  assert summary.pushed_path is None
  assert _versions(config.serving_model_dir) == before
  assert tree_digest(os.path.join(config.serving_model_dir, before[-1])) == pushed_bytes
  # The report is written for the unblessed model too, and says why.
  assert summary.executions.get('EvaluationReport') == 'COMPLETE', summary.executions
  assert summary.evaluation_report != first_summary.evaluation_report
  data = _report_json(summary)
  assert data['blessed'] is False
  assert any('sparse_categorical_accuracy' in f and '1.01' in f for f in data['failures'])
  assert 'Blessed: no' in open(summary.evaluation_report).read()
  # No batch inference with a model that was not blessed, and the run says so.
  assert summary.inference == ('none: the model was not blessed, so the BulkInferrer ran no '
                               'inference')
  assert 'Batch inference: none: the model was not blessed' in report.format_summary(summary)
