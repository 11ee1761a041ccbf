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


def test_transformed_bytes_and_unreadable_results(tmp_path):
  (tmp_path / 'Split-train').mkdir()
  (tmp_path / 'Split-train' / 'data.gz').write_bytes(b'x' * 2500)
  assert component_results.describe({'transformed_examples': [_artifact(tmp_path)]}) == (
      '2.5 KB of transformed examples')
  missing = {'model_run': [_artifact(tmp_path / 'missing')]}
  assert component_results.describe(missing).startswith('(result not readable: ')
  assert component_results.describe({'something_else': [_artifact()]}) == ''


def test_insight_counts_and_where_the_table_is(tmp_path):
  counts = json.dumps({'label_issue': 3, 'leak': 1})
  outputs = {'insight': [_artifact(tmp_path, num_images=2000, finding_counts=counts)]}
  assert component_results.describe(outputs) == (
      f'3 label_issue, 1 leak in 2,000 images: {tmp_path}/findings.csv')
  clean = {'insight': [_artifact(tmp_path, num_images=5, finding_counts='{}')]}
  assert component_results.describe(clean).startswith('no findings in 5 images: ')
