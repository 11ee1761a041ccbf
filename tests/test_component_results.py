"""The key result line of each component, from its output artifacts (MLMD protos)."""

import json

from ml_metadata.proto import metadata_store_pb2

from tools import component_results


def _artifact(uri='', **properties):
  artifact = metadata_store_pb2.Artifact(uri=str(uri))
  for name, value in properties.items():
    if isinstance(value, int):
      artifact.custom_properties[name].int_value = value
    else:
      artifact.custom_properties[name].string_value = value
  return artifact


def test_example_counts_from_the_examplegen_properties():
  outputs = {'examples': [_artifact(num_train=1600, num_eval=400, num_skipped=3)]}
  assert component_results.describe(outputs) == '1,600 train, 400 eval examples, 3 skipped'


def test_import_examplegen_without_counts_names_its_splits():
  outputs = {'examples': [_artifact(split_names='["train", "eval"]')]}
  assert component_results.describe(outputs) == 'splits train, eval'


def test_epochs_and_final_validation_metrics_from_the_history(tmp_path):
  (tmp_path / 'history.json').write_text(json.dumps(
      {'loss': [0.7, 0.5], 'val_loss': [0.6, 0.4], 'val_accuracy': [0.5, 0.875]}))
  outputs = {'model': [_artifact()], 'model_run': [_artifact(tmp_path)]}
  assert component_results.describe(outputs) == '2 epochs, val_accuracy 0.8750, val_loss 0.4000'


def test_pushed_or_not(tmp_path):
  pushed = {'pushed_model': [_artifact(pushed=1, pushed_destination='/serving/m/17')]}
  assert component_results.describe(pushed) == 'pushed to /serving/m/17'
  assert component_results.describe({'pushed_model': [_artifact(pushed=0)]}).startswith(
      'nothing pushed')
  unchanged = {'pushed_model': [_artifact(pushed=0, unchanged_as='/serving/m/17')]}
  assert component_results.describe(unchanged) == (
      'unchanged, nothing pushed (/serving/m/17 holds the same model)')
  for cached in (pushed, unchanged):  # a cached Pusher pushed nothing in this run
    assert component_results.describe(cached, cached=True) == (
        'unchanged, nothing pushed (/serving/m/17 holds the same model)')


def test_the_serving_canary_line_and_the_evaluator_apart():
  line = 'passed: loaded in 3.1 s with 6 warmup requests, peak RSS 900 MiB'
  assert component_results.describe({'blessing': [_artifact(blessed=1, canary=line)]}) == line
  assert component_results.describe({'blessing': [_artifact(blessed=0)]}) == 'not blessed'
  evaluator = {'evaluation': [_artifact('/missing')], 'blessing': [_artifact(blessed=1)]}
  assert component_results.describe(evaluator).startswith('(result not readable: ')


def test_transformed_bytes_and_unreadable_results(tmp_path):
  (tmp_path / 'Split-train').mkdir()
  (tmp_path / 'Split-train' / 'data.gz').write_bytes(b'x' * 2500)
  assert component_results.describe({'transformed_examples': [_artifact(tmp_path)]}) == (
      '2.5 KB of transformed examples')
  missing = {'model_run': [_artifact(tmp_path / 'missing')]}
  assert component_results.describe(missing).startswith('(result not readable: ')
  assert component_results.describe({'something_else': [_artifact()]}) == ''


def test_span_of_the_examples_and_the_window_ingested_at_once():
  outputs = {'examples': [_artifact(num_train=80, num_eval=20, num_skipped=0, spans='2')]}
  assert component_results.describe(outputs) == 'span 2: 80 train, 20 eval examples, 0 skipped'
  outputs['examples'][0].custom_properties['spans'].string_value = '1,2'
  assert component_results.describe(outputs).startswith('spans 1,2: 80 train')


def test_warm_start_or_from_scratch_after_the_epochs(tmp_path):
  from trainer import warm_start  # pylint: disable=g-import-not-at-top
  (tmp_path / 'history.json').write_text(json.dumps({'loss': [0.7], 'val_loss': [0.6]}))
  outputs = {'model': [_artifact()], 'model_run': [_artifact(tmp_path)]}
  warm_start.write_decision(warm_start.WarmStart(True, 'same classes', '/m'), str(tmp_path))
  assert component_results.describe(outputs) == (
      '1 epoch, val_loss 0.6000; warm start from the blessed model')
  warm_start.write_decision(warm_start.WarmStart(False, 'the classes changed (added owls).'),
                            str(tmp_path))
  assert component_results.describe(outputs).endswith(
      '; from scratch: the classes changed (added owls).')


def test_transform_over_a_window_describes_its_analyzer_cache(tmp_path):
  for name in ('examples-1-Split-train-STAR-ab', 'examples-12-Split-train-STAR-cd'):
    (tmp_path / name).mkdir()
  outputs = {'transform_graph': [_artifact()], 'updated_analyzer_cache': [_artifact(tmp_path)]}
  assert component_results.describe(outputs) == (
      'analyzer cache of 2 datasets (kept for the next run)')


def test_data_validation_lines(tmp_path):
  from tensorflow_metadata.proto.v0 import anomalies_pb2  # pylint: disable=g-import-not-at-top
  for split, features in (('train', []), ('eval', ['image_format'])):
    (tmp_path / f'Split-{split}').mkdir()
    found = anomalies_pb2.Anomalies()
    for name in features:
      found.anomaly_info[name].description = 'GIF'
    (tmp_path / f'Split-{split}' / 'SchemaDiff.pb').write_bytes(found.SerializeToString())
  assert component_results.describe({'anomalies': [_artifact(tmp_path)]}) == (
      'anomalies against the schema in image_format')
  result = tmp_path / 'validation'
  result.mkdir()
  (result / 'validation.json').write_text(json.dumps({'anomalies': ['a line'], 'drift': [
      {'feature': 'class_name', 'value': 0.391}, {'feature': 'image_height', 'value': 0.0}]}))
  outputs = {'validation': [_artifact(result)], 'accepted_statistics': [_artifact()]}
  assert component_results.describe(outputs) == (
      '1 anomaly, training anyway (data.validation: warn); drift from the last accepted span: '
      'class_name 0.39, image_height 0.00')
  (result / 'validation.json').write_text(json.dumps(
      {'anomalies': [], 'drift': [], 'note': 'no earlier accepted span'}))
  assert component_results.describe(outputs) == 'no anomalies; no earlier accepted span'


def test_insight_counts_and_where_the_table_is(tmp_path):
  counts = json.dumps({'label_issue': 3, 'leak': 1})
  outputs = {'insight': [_artifact(tmp_path, num_images=2000, finding_counts=counts)]}
  assert component_results.describe(outputs) == (
      f'3 label_issue, 1 leak in 2,000 images: {tmp_path}/findings.csv')
  clean = {'insight': [_artifact(tmp_path, num_images=5, finding_counts='{}')]}
  assert component_results.describe(clean).startswith('no findings in 5 images: ')
