import json
import os

import pytest
import tensorflow as tf

from components import image_ingest, image_listing, ingest_pipeline
from tests.conftest import encode_image, random_pixels


def read_examples(output_dir, split):
  pattern = os.path.join(output_dir, f'Split-{split}', '*.gz')
  dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type='GZIP')
  return [tf.train.Example.FromString(r.numpy()) for r in dataset]


def feature(example, key):
  values = example.features.feature[key]
  return values.int64_list.value[0] if key == 'label' else values.bytes_list.value[0]


def test_counts_labels_and_vocabulary(class_folder, tmp_path):
  out = str(tmp_path / 'out')
  summary = ingest_pipeline.ingest(str(class_folder), out, eval_percent=30, num_shards=2)
  assert summary.class_names == ['cats', 'dogs']
  assert summary.found == {'cats': 12, 'dogs': 9}
  assert summary.total_skipped == 0
  for name in summary.class_names:
    assert sum(summary.written[s][name] for s in ('train', 'eval')) == summary.found[name]
  with open(os.path.join(out, ingest_pipeline.VOCABULARY_FILE)) as f:
    assert f.read().split() == ['cats', 'dogs']
  for split in ('train', 'eval'):
    examples = read_examples(out, split)
    assert len(examples) == sum(summary.written[split].values()) > 0
    for example in examples:
      filename = feature(example, 'filename').decode()
      assert filename.split('/')[0] == summary.class_names[feature(example, 'label')]
      assert feature(example, 'image') == (class_folder / filename).read_bytes()
      assert image_listing.hash_split(filename, 30) == split
  with open(os.path.join(out, ingest_pipeline.SUMMARY_FILE)) as f:
    assert json.load(f)['written'] == summary.written


def test_split_is_deterministic_and_near_requested_share(tmp_path):
  names = [f'cls/{i}.jpg' for i in range(2000)]
  splits = [image_listing.hash_split(n, 20) for n in names]
  assert splits == [image_listing.hash_split(n, 20) for n in names]
  assert 0.17 < splits.count('eval') / len(splits) < 0.23


def test_presplit_folder_keeps_its_split(tmp_path):
  root = tmp_path / 'cats_and_dogs_filtered'
  layout = {('train', 'cats'): 4, ('train', 'dogs'): 3, ('validation', 'cats'): 2,
            ('validation', 'dogs'): 1}
  for (split, name), count in layout.items():
    (root / split / name).mkdir(parents=True)
    for i in range(count):
      (root / split / name / f'{i}.png').write_bytes(encode_image(random_pixels((8, 8, 3), i)))
  out = str(tmp_path / 'out')
  summary = ingest_pipeline.ingest(str(root), out)
  assert summary.written == {'train': {'cats': 4, 'dogs': 3}, 'eval': {'cats': 2, 'dogs': 1}}
  for example in read_examples(out, 'eval'):
    assert feature(example, 'filename').decode().startswith('validation/')


def test_bad_files_are_quarantined_with_reasons(class_folder, tmp_path):
  (class_folder / 'cats' / 'empty.jpg').write_bytes(b'')
  (class_folder / 'cats' / 'text.jpg').write_text('not an image')
  (class_folder / 'cats' / 'notes.txt').write_text('hello')
  (class_folder / 'dogs' / '.hidden.png').write_bytes(encode_image(random_pixels((8, 8, 3))))
  (class_folder / 'stray.png').write_bytes(encode_image(random_pixels((8, 8, 3))))
  out = str(tmp_path / 'out')
  summary = ingest_pipeline.ingest(str(class_folder), out)
  reasons = {r['path']: r['reason'] for r in summary.skipped_files}
  assert reasons == {
      'cats/empty.jpg': 'empty file',
      'cats/notes.txt': 'not an image file extension',
      'cats/text.jpg': reasons['cats/text.jpg'],
      'dogs/.hidden.png': 'hidden file',
      'stray.png': 'not inside a class folder',
  }
  assert reasons['cats/text.jpg'].startswith('not a readable image')
  for name, found in summary.found.items():
    written = sum(summary.written[s].get(name, 0) for s in ('train', 'eval'))
    assert found == written + summary.skipped.get(name, 0)
  with open(os.path.join(out, ingest_pipeline.QUARANTINE_FILE)) as f:
    assert len(f.readlines()) == 5


def test_too_many_skipped_is_refused(class_folder, tmp_path):
  for i in range(30):
    (class_folder / 'cats' / f'bad{i}.jpg').write_bytes(b'junk')
  with pytest.raises(ingest_pipeline.IngestError, match='max_skipped_fraction'):
    ingest_pipeline.ingest(str(class_folder), str(tmp_path / 'out'), max_skipped_fraction=0.5)


def test_fingerprint_changes_with_content_names_and_permissions(class_folder):
  """The ExampleGen cache key: a permission fix must count, or the file stays quarantined."""
  before = image_listing.fingerprint(str(class_folder))
  assert image_listing.fingerprint(str(class_folder)) == before
  path = class_folder / 'cats' / 'cats_0.png'
  path.chmod(0o000)
  unreadable = image_listing.fingerprint(str(class_folder))
  path.chmod(0o644)
  fixed = image_listing.fingerprint(str(class_folder))
  assert len({before, unreadable, fixed}) == 3
  (class_folder / 'cats' / 'cats_0.png').rename(class_folder / 'cats' / 'renamed.png')
  assert image_listing.fingerprint(str(class_folder)) != fixed
