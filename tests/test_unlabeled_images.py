"""The unlabeled ExampleGen of batch inference, and its CSV (no pipeline run)."""

import json
import os

import pytest
import tensorflow as tf

from components.example_gen import image_listing, image_walk, unlabeled_images
from components.inference import inference_table, prediction_table
from tests.conftest import encode_image, random_pixels

SPEC = {'image': tf.io.FixedLenFeature([], tf.string),
        'filename': tf.io.FixedLenFeature([], tf.string)}


def _folder(root):
  (root / 'a' / '.hidden').mkdir(parents=True)
  (root / 'b').mkdir()
  images = {'a/x.png': encode_image(random_pixels((10, 12, 3), 1)),
            'b/y.jpg': encode_image(random_pixels((9, 9, 3), 2), 'JPEG')}
  for name, data in images.items():
    (root / name).write_bytes(data)
  (root / 'b' / 'empty.png').write_bytes(b'')
  (root / 'a' / '.hidden' / 'z.png').write_bytes(images['a/x.png'])
  return images


def test_examples_carry_image_and_path_and_skips_are_listed(tmp_path):
  images = _folder(tmp_path / 'in')
  out = tmp_path / 'out'
  assert unlabeled_images.write_unlabeled_examples(str(tmp_path / 'in'), str(out), 10**6) == (2, 2)
  files = tf.io.gfile.glob(str(out / 'Split-unlabeled' / '*.gz'))
  parsed = [tf.io.parse_single_example(r, SPEC)
            for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]
  by_path = {p['filename'].numpy().decode(): p['image'].numpy() for p in parsed}
  assert by_path == {str(tmp_path / 'in' / name): data for name, data in images.items()}
  skipped = [json.loads(line) for line in (out / unlabeled_images.SKIPPED_FILE).open()]
  assert {(os.path.relpath(s['path'], tmp_path / 'in'), s['reason']) for s in skipped} == {
      ('a/.hidden', 'hidden folder (not read)'), ('b/empty.png', 'empty file')}
  assert unlabeled_images.read_skipped(str(out)) == [(s['path'], s['reason']) for s in skipped]


def _examples(folder):
  files = tf.io.gfile.glob(os.path.join(folder, 'Split-unlabeled', '*.gz'))
  return [tf.io.parse_single_example(r, SPEC)
          for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def test_nested_and_bad_files_match_what_predict_walks(tmp_path):
  """Every file at any depth, in several shards: written or skipped exactly as
  `transfer-pipeline predict` reads the same folder (the CSV rows must agree)."""
  root = tmp_path / 'in'
  _folder(root)
  (root / 'b' / 'c' / 'd').mkdir(parents=True)
  (root / 'b' / 'c' / 'd' / 'deep.png').write_bytes(encode_image(random_pixels((8, 9, 3), 4)))
  (root / 'b' / 'c' / 'notes.txt').write_text('not an image')
  (root / 'b' / 'c' / 'fake.jpg').write_bytes(b'GIF89a not really')
  (root / 'b' / '.DS_Store').write_bytes(b'\0')
  (root / 'linked').symlink_to(root / 'a')
  out = tmp_path / 'out'
  assert unlabeled_images.write_unlabeled_examples(str(root), str(out), 10**6,
                                                   num_shards=3) == (3, 6)
  assert len(tf.io.gfile.glob(str(out / 'Split-unlabeled' / '*-of-00003.gz'))) == 3
  walked = list(image_walk.walk_images([str(root)], 10**6))
  assert sorted(p['filename'].numpy().decode() for p in _examples(str(out))) == sorted(
      prediction_table.display_path(w.path) for w in walked if w.image is not None)
  assert sorted(unlabeled_images.read_skipped(str(out))) == sorted(
      (prediction_table.display_path(w.path), w.reason) for w in walked if w.image is None)
  assert {os.path.relpath(p, root): r for p, r in unlabeled_images.read_skipped(str(out))} == {
      'a/.hidden': 'hidden folder (not read)', 'b/empty.png': 'empty file',
      'b/.DS_Store': 'hidden file', 'b/c/notes.txt': 'not an image file extension',
      'b/c/fake.jpg': 'corrupt image data', 'linked': 'symlink to a folder'}


def test_a_missing_folder_fails_in_one_line(tmp_path):
  with pytest.raises(image_listing.ListingError, match='does not exist or is not a folder'):
    unlabeled_images.write_unlabeled_examples(str(tmp_path / 'missing'), str(tmp_path / 'o'),
                                              10**6)


def test_walk_reports_a_symlink_leaving_the_folder(tmp_path):
  (tmp_path / 'in').mkdir()
  outside = tmp_path / 'outside.png'
  outside.write_bytes(encode_image(random_pixels((8, 8, 3), 3)))
  (tmp_path / 'in' / 'link.png').symlink_to(outside)
  (found,) = image_walk.walk_images([str(tmp_path / 'in')], 10**6)
  assert found.image is None and found.reason == 'symlink points outside the data folder'
  assert image_walk.count_files([str(tmp_path / 'in'), str(outside)]) == 2


def test_inference_csv_without_predictions_lists_the_skipped(tmp_path):
  """An InferenceResult with no logs (e.g. an empty folder): the CSV still lists skips."""
  _folder(tmp_path / 'in')
  unlabeled_images.write_unlabeled_examples(str(tmp_path / 'in'), str(tmp_path / 'ex'), 10**6)
  (tmp_path / 'inference').mkdir()
  csv_path = str(tmp_path / 'p.csv')
  assert inference_table.write_inference_csv(str(tmp_path / 'inference'), str(tmp_path / 'ex'),
                                             ['cats', 'dogs'], csv_path) == (0, 2)
  rows = prediction_table.read_rows(csv_path)
  assert [r['skipped'] for r in rows] == ['hidden folder (not read)', 'empty file']


def _prediction_log(path: str, probabilities) -> bytes:
  """A PredictionLog as the BulkInferrer writes it for `examples_numeric`."""
  from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=g-import-not-at-top
  log = prediction_log_pb2.PredictionLog()
  example = unlabeled_images.unlabeled_example(b'png bytes', path).SerializeToString()
  log.predict_log.request.inputs['examples'].string_val.append(example)
  log.predict_log.response.outputs['probabilities'].CopyFrom(
      tf.make_tensor_proto([probabilities], dtype=tf.float32))
  return log.SerializeToString()


def test_inference_csv_merges_predictions_and_skips_by_path(tmp_path):
  _folder(tmp_path / 'in')
  unlabeled_images.write_unlabeled_examples(str(tmp_path / 'in'), str(tmp_path / 'ex'), 10**6)
  (tmp_path / 'inference').mkdir()
  with tf.io.TFRecordWriter(str(tmp_path / 'inference' / 'prediction_logs-00000.gz'),
                            options='GZIP') as writer:
    writer.write(_prediction_log(str(tmp_path / 'in' / 'b' / 'y.jpg'), [0.25, 0.75]))
    writer.write(_prediction_log(str(tmp_path / 'in' / 'a' / 'x.png'), [0.875, 0.125]))
  csv_path = str(tmp_path / 'p.csv')
  assert inference_table.write_inference_csv(str(tmp_path / 'inference'), str(tmp_path / 'ex'),
                                             ['cats', 'dogs'], csv_path) == (2, 2)
  rows = prediction_table.read_rows(csv_path)
  assert [os.path.relpath(r['path'], tmp_path / 'in') for r in rows] == [
      'a/.hidden', 'a/x.png', 'b/empty.png', 'b/y.jpg']
  assert rows[1]['class_name'] == 'cats' and rows[1]['probabilities'] == {'cats': 0.875,
                                                                          'dogs': 0.125}
  assert rows[3]['class_name'] == 'dogs' and rows[2]['skipped'] == 'empty file'
