"""Data validation: the image facts ExampleGen writes, the curated schema, TFDV's
span-to-span drift in words, and the gate's console lines. Statistics come from real
TFDV runs over small tables; the whole pipeline is in test_data_validation_e2e.py."""

import io

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from PIL import Image
from sklearn.datasets import load_sample_images

import console
from components.example_gen import image_ingest
from components.validation import curated_schema, drift
from components.validation.data_validation import DataValidationError
from contract.features import (CLASS_NAME_KEY, FILENAME_KEY, IMAGE_BYTE_SIZE_KEY,
                               IMAGE_FORMAT_KEY, IMAGE_HEIGHT_KEY, IMAGE_KEY, IMAGE_WIDTH_KEY)
from pipeline.configs import ConfigError, load_config
from tools.run_console import ComponentLines


def _statistics(classes, size, image_format='JPEG'):
  """TFDV statistics of a span: `classes` maps class name -> number of images of `size` px."""
  rows = [{CLASS_NAME_KEY: name, FILENAME_KEY: f'{name}/{i}.jpg', IMAGE_HEIGHT_KEY: size,
           IMAGE_WIDTH_KEY: size + i % 3, IMAGE_FORMAT_KEY: image_format}
          for name, count in classes.items() for i in range(count)]
  return tfdv.generate_statistics_from_dataframe(pd.DataFrame(rows))


BALANCED = _statistics({'china': 20, 'flower': 20}, 150)


def test_examples_carry_the_stored_image_size_bytes_and_format():
  photo = load_sample_images().images[0][:120, :90]  # 120 high, 90 wide
  out = io.BytesIO()
  Image.fromarray(photo).save(out, format='JPEG')
  example = image_ingest.make_example(out.getvalue(), 1, 'china', 'china/a.jpg')
  feature = example.features.feature
  assert feature[IMAGE_HEIGHT_KEY].int64_list.value == [120]
  assert feature[IMAGE_WIDTH_KEY].int64_list.value == [90]
  assert feature[IMAGE_BYTE_SIZE_KEY].int64_list.value == [len(out.getvalue())]
  assert feature[IMAGE_FORMAT_KEY].bytes_list.value == [b'JPEG']
  assert feature[IMAGE_KEY].bytes_list.value == [out.getvalue()]


def test_curated_schema_has_the_image_domain_and_no_class_or_file_lists():
  rows = [{IMAGE_KEY: b'\xff\xd8\xff', CLASS_NAME_KEY: 'china', FILENAME_KEY: f'{i}.jpg',
           IMAGE_FORMAT_KEY: 'JPEG'} for i in range(5)]
  inferred = tfdv.infer_schema(tfdv.generate_statistics_from_dataframe(pd.DataFrame(rows)))
  assert tfdv.get_domain(inferred, FILENAME_KEY).value  # TFDV lists the 5 file names
  schema = curated_schema.curate(inferred)
  assert tfdv.get_feature(schema, IMAGE_KEY).HasField('image_domain')
  for name in (CLASS_NAME_KEY, FILENAME_KEY):
    assert tfdv.get_feature(schema, name).WhichOneof('domain_info') is None, name
  assert [d.name for d in schema.string_domain] == [IMAGE_FORMAT_KEY]  # a new format is caught


def test_unreadable_schema_file_is_named(tmp_path):
  bad = tmp_path / 'schema.pbtxt'
  bad.write_text('feature { name: "image" typo }')
  with pytest.raises(curated_schema.SchemaFileError, match=f'{bad} is not a readable schema'):
    curated_schema.read_schema(str(bad))


def test_only_an_edited_schema_changes_the_fingerprint(tmp_path):
  """Unedited, the first run's cached schema (and Transform) stay valid; edited, it re-runs."""
  editable = tmp_path / 'schema' / 'schema.pbtxt'
  assert curated_schema.edit_fingerprint('', str(editable)) == ''  # the first run
  editable.parent.mkdir()
  schema = tfdv.infer_schema(BALANCED)
  for path in (editable, curated_schema.inferred_copy(str(editable))):
    tfdv.write_schema_text(schema, str(path))
  assert curated_schema.edit_fingerprint('', str(editable)) == ''  # as inferred
  tfdv.get_feature(schema, IMAGE_FORMAT_KEY).presence.min_fraction = 0.5
  tfdv.write_schema_text(schema, str(editable))
  edited = curated_schema.edit_fingerprint('', str(editable))
  assert len(edited) == 64
  own = tmp_path / 'own.pbtxt'
  tfdv.write_schema_text(schema, str(own))
  assert curated_schema.edit_fingerprint(str(own), str(editable)) == edited  # data.schema
  assert curated_schema.edit_fingerprint('gs://bucket/schema.pbtxt', str(editable)) == ''


def _exceeded(current, previous=BALANCED):
  return {d.feature: d for d in drift.compare(current, previous, 0.2, 0.3) if d.exceeded}


def test_same_distribution_is_no_drift():
  drifts = drift.compare(_statistics({'china': 19, 'flower': 21}, 150), BALANCED, 0.2, 0.3)
  assert {d.feature for d in drifts} == {CLASS_NAME_KEY, IMAGE_HEIGHT_KEY, IMAGE_WIDTH_KEY}
  assert not [d for d in drifts if d.exceeded]
  assert drift.class_set_change(BALANCED, BALANCED, 'train') is None


def test_class_balance_drift_names_the_shares():
  exceeded = _exceeded(_statistics({'china': 36, 'flower': 4}, 150))
  assert set(exceeded) == {CLASS_NAME_KEY}
  line = exceeded[CLASS_NAME_KEY].line('train')
  assert line == ('class_name (train): L-infinity distance 0.40 from the previous span, expected '
                  'at most 0.2 (data.max_class_drift): was china 50%, flower 50%, came '
                  'china 90%, flower 10%')


def test_resolution_drop_to_a_tenth_is_size_drift():
  exceeded = _exceeded(_statistics({'china': 20, 'flower': 20}, 15))
  assert set(exceeded) == {IMAGE_HEIGHT_KEY, IMAGE_WIDTH_KEY}
  height = exceeded[IMAGE_HEIGHT_KEY]
  assert height.value > 0.9 and height.previous == 'mean 150 px' and height.current == 'mean 15 px'
  assert 'expected at most 0.3 (data.max_size_drift)' in height.line('train')


def test_a_class_that_disappears_or_appears_is_named():
  missing = _statistics({'china': 40}, 150)
  assert drift.class_set_change(missing, BALANCED, 'train') == (
      'class_name (train): the class set changed, expected china, flower, came china '
      '(missing: flower)')
  assert CLASS_NAME_KEY in _exceeded(missing)
  added = _statistics({'china': 14, 'flower': 13, 'rose': 13}, 150)
  assert drift.class_set_change(added, BALANCED, 'train').endswith('(new: rose)')


def test_a_previous_span_without_size_features_compares_the_classes_only():
  old = tfdv.generate_statistics_from_dataframe(pd.DataFrame(
      [{CLASS_NAME_KEY: n} for n in ['china'] * 20 + ['flower'] * 20]))
  assert [d.feature for d in drift.compare(BALANCED, old, 0.2, 0.3)] == [CLASS_NAME_KEY]


def test_a_new_image_format_is_a_schema_anomaly_that_names_what_is_allowed():
  schema = curated_schema.curate(tfdv.infer_schema(BALANCED))
  anomalies = tfdv.validate_statistics(_statistics({'china': 20, 'flower': 20}, 150, 'GIF'),
                                       schema)
  [line] = drift.schema_lines(anomalies, 'eval', schema)
  assert line.startswith('image_format (eval): Unexpected string values: ')
  assert 'GIF' in line and line.endswith('(the schema allows JPEG)')
  assert drift.schema_lines(tfdv.validate_statistics(BALANCED, schema), 'eval', schema) == []


def test_a_stopped_run_prints_one_line_per_anomaly(monkeypatch):
  said = []
  monkeypatch.setattr(console, 'say', said.append)
  lines = ComponentLines()
  lines.pipeline_started(['StatisticsGen', 'DataValidation'])
  lines.component_started('DataValidation')
  error = DataValidationError(['class_name (train): a', 'image_height (train): b'])
  lines.component_failed('DataValidation', error)
  assert said[1].startswith('[2/2] DataValidation FAILED after ')
  assert said[2:] == ['  class_name (train): a', '  image_height (train): b']
  assert str(error).startswith('Data validation found 2 anomalies: the run stopped before '
                               'training (nothing trained or pushed).')
  assert '\n' not in str(error)


@pytest.mark.parametrize('key, value, message', [
    ('data.validation', 'maybe', "data.validation: expected 'stop' or 'warn'"),
    ('data.max_class_drift', 1.5, 'data.max_class_drift: expected a number between 0 and 1'),
    ('data.max_size_drift', -0.1, 'data.max_size_drift: expected a number between 0 and 1'),
])
def test_validation_settings_are_checked(key, value, message):
  with pytest.raises(ConfigError, match=message):
    load_config(overrides={'data.path': 'x', key: value}).validate()
