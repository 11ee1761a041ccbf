"""Span folders in ImageFolderExampleGen: TFX's {SPAN}/{VERSION}/{YYYY}{MM}{DD} specs, the
typed span properties, the training window and the Kubeflow window ingestion."""

import datetime
import os

import pytest
import tensorflow as tf
from tfx.components.example_gen import utils
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts

from components.example_gen import image_folder_example_gen as gen, spans
from components.example_gen.ingest_summary import IngestError
from components.example_gen.span_window import newest_spans
from tests.conftest import encode_image, random_pixels


def _class_folders(root, classes=('cats', 'dogs'), per_class=4, seed=0):
  for c, name in enumerate(classes):
    (root / name).mkdir(parents=True)
    for i in range(per_class):
      (root / name / f'{name}{i}.png').write_bytes(
          encode_image(random_pixels((12, 12, 3), seed * 100 + c * 10 + i)))
  return root


def _folders(tmp_path, *names):
  for name in names:
    (tmp_path / name / 'cats').mkdir(parents=True)
  return str(tmp_path)


def test_newest_span_is_the_highest_number_not_the_last_name(tmp_path):
  base = _folders(tmp_path, 'span-1', 'span-2', 'span-10')
  span = spans.resolve(base, 'span-{SPAN}/*')
  assert (span.number, span.version) == (10, None)
  assert span.folder == os.path.join(base, 'span-10')


def test_span_width(tmp_path):
  base = _folders(tmp_path, 'week-001', 'week-012', 'week-003')
  base_path, pattern = spans.split_path(os.path.join(base, 'week-{SPAN:3}'))
  assert (base_path, pattern) == (base, 'week-{SPAN:3}/*')
  span = spans.resolve(base_path, pattern)
  assert span.number == 12 and span.folder.endswith('week-012')


def test_date_pattern_counts_days_since_1970(tmp_path):
  base = _folders(tmp_path, '2026-11-30', '2026-12-04', '2026-12-01')
  span = spans.resolve(*spans.split_path(os.path.join(base, '{YYYY}-{MM}-{DD}')))
  assert span.number == (datetime.date(2026, 12, 4) - datetime.date(1970, 1, 1)).days
  assert span.folder.endswith('2026-12-04')


def test_newest_version_of_the_newest_span(tmp_path):
  base = _folders(tmp_path, 'span-1/v-3', 'span-2/v-1', 'span-2/v-2')
  span = spans.resolve(*spans.split_path(os.path.join(base, 'span-{SPAN}/v-{VERSION}')))
  assert (span.number, span.version) == (2, 2)
  assert span.folder == os.path.join(base, 'span-2', 'v-2')


def test_no_match_fails_in_one_line_naming_the_pattern(tmp_path):
  base = _folders(tmp_path, 'other')
  with pytest.raises(IngestError) as error:
    spans.resolve(base, 'span-{SPAN}/*')
  message = str(error.value)
  assert 'span-{SPAN}' in message and '\n' not in message


def test_bad_specs_fail_in_one_line(tmp_path):
  with pytest.raises(IngestError, match='VERSION'):
    spans.input_split('v-{VERSION}/*')


def test_paths_without_specs_are_read_as_before():
  assert spans.split_path('/data/digits/') == ('/data/digits', spans.UNSPANNED_PATTERN)
  assert spans.split_path('gs://bucket/photos/week-{SPAN}') == (
      'gs://bucket/photos', 'week-{SPAN}/*')


def test_window_skips_missing_span_numbers(tmp_path):
  base = _folders(tmp_path, 'span-1', 'span-2', 'span-4', 'span-5')
  window = spans.window(base, 'span-{SPAN}/*', newest=5, num_spans=3)
  assert [s.number for s in window] == [4, 5]
  assert [s.number for s in spans.window(base, 'span-{SPAN}/*', 2, 5)] == [1, 2]


def _run_example_gen(tmp_path, data_path, ingest_spans=1):
  """The component's driver (span resolution), then its executor, as the runner calls them."""
  component = gen.ImageFolderExampleGen(
      input_base=data_path, eval_percent=25, num_shards=1, max_skipped_fraction=0.5,
      max_image_pixels=10**6, max_image_bytes=10**6, ingest_spans=ingest_spans)
  exec_properties = gen.ImageFolderDriver(None).resolve_exec_properties(
      dict(component.exec_properties), None, None)
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / 'examples')
  executor = gen.Executor(base_beam_executor.BaseBeamExecutor.Context(
      beam_pipeline_args=['--runner=DirectRunner']))
  executor.Do({}, {'examples': [examples]}, exec_properties)
  return examples, exec_properties


def _filenames(examples):
  files = tf.io.gfile.glob(os.path.join(examples.uri, 'Split-*', '*.gz'))
  return sorted(tf.train.Example.FromString(r.numpy()).features.feature['filename']
                .bytes_list.value[0].decode()
                for r in tf.data.TFRecordDataset(files, compression_type='GZIP'))


def test_example_gen_reads_the_newest_span_with_typed_span_properties(tmp_path):
  data = tmp_path / 'data'
  _class_folders(data / 'span-1', seed=1)
  _class_folders(data / 'span-2', seed=2)
  examples, exec_properties = _run_example_gen(tmp_path, str(data / 'span-{SPAN}'))
  assert exec_properties[utils.SPAN_PROPERTY_NAME] == 2
  assert examples.mlmd_artifact.properties['span'].int_value == 2  # typed: TFX resolvers
  assert examples.get_int_custom_property('span') == 2
  assert 'version' not in examples.mlmd_artifact.properties
  names = _filenames(examples)
  assert len(names) == 8 and all(n.split('/')[0] in ('cats', 'dogs') for n in names)
  # The fingerprint is the span folder's: span 1 changing does not re-run ExampleGen.
  before = exec_properties[utils.FINGERPRINT_PROPERTY_NAME]
  (data / 'span-1' / 'cats' / 'new.png').write_bytes(encode_image(random_pixels((9, 9, 3))))
  again = gen.ImageFolderDriver(None).resolve_exec_properties(
      dict(gen.ImageFolderExampleGen(
          input_base=str(data / 'span-{SPAN}'), eval_percent=25, num_shards=1,
          max_skipped_fraction=0.5, max_image_pixels=10**6,
          max_image_bytes=10**6).exec_properties), None, None)
  assert again[utils.FINGERPRINT_PROPERTY_NAME] == before


def test_example_gen_with_ingest_spans_reads_the_window_in_one_artifact(tmp_path):
  """Kubeflow V2's window: the newest N spans, cut where the classes change."""
  data = tmp_path / 'data'
  _class_folders(data / 'span-0', classes=('cats', 'dogs', 'owls'), seed=0)
  _class_folders(data / 'span-1', seed=1)
  _class_folders(data / 'span-3', seed=3)
  examples, _ = _run_example_gen(tmp_path, str(data / 'span-{SPAN}'), ingest_spans=4)
  assert examples.span == 3
  assert examples.get_string_custom_property('spans') == '1,3'  # span 0 had other classes
  assert examples.get_string_custom_property('label_vocabulary') == 'cats,dogs'
  assert {n.split('/')[0] for n in _filenames(examples)} == {'span-1', 'span-3'}


def _examples(artifact_id, span, classes='cats,dogs', version=None):
  artifact = standard_artifacts.Examples()
  artifact.id = artifact_id
  artifact.span = span
  if version is not None:
    artifact.version = version
  artifact.set_string_custom_property('label_vocabulary', classes)
  return artifact


def test_window_strategy_one_artifact_per_span_newest_n():
  artifacts = [_examples(1, 0), _examples(2, 1), _examples(3, 1), _examples(4, 2),
               _examples(5, 3, version=1), _examples(6, 3, version=0)]
  window = newest_spans(artifacts, 3)
  assert [a.id for a in window] == [5, 4, 3]  # spans 3, 2, 1; span 1 re-ingested: newest
  assert [a.id for a in newest_spans(artifacts[:1], 3)] == [1]  # fewer spans so far


def test_window_strategy_starts_over_when_the_classes_change():
  artifacts = [_examples(1, 1), _examples(2, 2, 'cats,dogs,owls'), _examples(3, 3, 'cats,dogs,owls')]
  assert [a.id for a in newest_spans(artifacts, 3)] == [3, 2]


def test_demo_spans_are_new_images_each_week_and_the_third_drifts(tmp_path):
  from tools import demo_data  # pylint: disable=g-import-not-at-top
  output = str(tmp_path / 'spans')
  assert demo_data.next_span(output) == 1
  counts = demo_data.write_digit_spans(output, 3, per_class=10)
  assert counts[:2] == [{'zero': 10, 'one': 10}] * 2
  assert counts[2] == {'zero': 10, 'one': demo_data.DRIFTED_COUNT}
  files = [{(c, f) for c in ('zero', 'one') for f in os.listdir(os.path.join(output, f'span-{s}', c))}
           for s in (1, 2, 3)]
  assert not files[0] & files[1] and not files[1] & files[2]
  assert demo_data.next_span(output) == 4
  span = spans.resolve(*spans.split_path(os.path.join(output, demo_data.SPAN_PATTERN)))
  assert span.number == 3


def test_demo_data_written_again_leaves_the_ingestion_cache_key_alone(tmp_path):
  """`make demo` twice: the second demo-data call rewrites nothing, so ExampleGen stays
  cached (its fingerprint holds every file's mtime); a damaged file is written again."""
  from components.example_gen import image_listing  # pylint: disable=g-import-not-at-top
  from tools import demo_data  # pylint: disable=g-import-not-at-top
  output = str(tmp_path / 'digits')
  demo_data.write_digits(output, (0, 1), per_class=3)
  before = image_listing.fingerprint(output)
  demo_data.write_digits(output, (0, 1), per_class=3)
  assert image_listing.fingerprint(output) == before
  damaged = os.path.join(output, 'one', sorted(os.listdir(os.path.join(output, 'one')))[0])
  with open(damaged, 'rb') as f:
    original = f.read()
  with open(damaged, 'wb') as f:
    f.write(b'not a png')
  demo_data.write_digits(output, (0, 1), per_class=3)
  with open(damaged, 'rb') as f:
    assert f.read() == original
