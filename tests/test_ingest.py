import json
import os

import numpy as np
import pytest
import tensorflow as tf

from components.example_gen import content_split, image_listing, ingest_pipeline
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
  for name in summary.class_names:  # stratified: each class sends its share to eval
    assert summary.written['eval'][name] == content_split.eval_count(summary.found[name], 30)
  with open(os.path.join(out, ingest_pipeline.SUMMARY_FILE)) as f:
    assert json.load(f)['written'] == summary.written


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
    assert found == written + summary.skipped.get(name, 0) + summary.ignored.get(name, 0)
  assert summary.ignored == {'cats': 1, 'dogs': 1} and summary.total_skipped == 3
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


def _longest_run(labels) -> int:
  longest = run = 0
  for i, label in enumerate(labels):
    run = run + 1 if i and label == labels[i - 1] else 1
    longest = max(longest, run)
  return longest


def test_shards_are_class_mixed_like_a_random_order(tmp_path):
  """The Trainer reads the shards in order (the cached path does not shuffle files): the
  longest run of one class must stay within what a random order of the same labels gives."""
  root = tmp_path / 'images'
  for k, name in enumerate(('a', 'b', 'c')):
    (root / name).mkdir(parents=True)
    for i in range(60):
      (root / name / f'{i}.png').write_bytes(encode_image(random_pixels((4, 4, 3), 100 * k + i)))
  out = str(tmp_path / 'out')
  ingest_pipeline.ingest(str(root), out, num_shards=2, eval_percent=10)
  rng = np.random.default_rng(0)
  for path in sorted(tf.io.gfile.glob(os.path.join(out, 'Split-train', '*.gz'))):
    labels = [feature(tf.train.Example.FromString(r.numpy()), 'label')
              for r in tf.data.TFRecordDataset(path, compression_type='GZIP')]
    assert len(set(labels)) == 3 and len(labels) > 60
    random_runs = [_longest_run(rng.permutation(labels)) for _ in range(2000)]
    assert _longest_run(labels) <= np.percentile(random_runs, 99), labels


def test_ingestion_is_deterministic(class_folder, tmp_path):
  first, second = str(tmp_path / 'a'), str(tmp_path / 'b')
  ingest_pipeline.ingest(str(class_folder), first, num_shards=3)
  ingest_pipeline.ingest(str(class_folder), second, num_shards=3)
  for split in ('train', 'eval'):
    files = [sorted(tf.io.gfile.glob(os.path.join(out, f'Split-{split}', '*.gz')))
             for out in (first, second)]
    assert [os.path.basename(f) for f in files[0]] == [os.path.basename(f) for f in files[1]]
    for a, b in zip(*files):  # byte-identical records, in the same order
      assert [r.numpy() for r in tf.data.TFRecordDataset(a, 'GZIP')] == \
          [r.numpy() for r in tf.data.TFRecordDataset(b, 'GZIP')]


def test_class_folders_that_print_alike_are_refused(class_folder, tmp_path):
  """'a\\nb' (a newline) and 'a\\\\nb' (a backslash and n) would both print as a\\nb."""
  for name in ('a\nb', 'a\\nb'):
    (class_folder / name).mkdir()
    (class_folder / name / 'x.png').write_bytes(encode_image(random_pixels((8, 8, 3))))
  with pytest.raises(ingest_pipeline.IngestError, match='same printable name'):
    ingest_pipeline.ingest(str(class_folder), str(tmp_path / 'out'))


def _write_records(path, labels):
  with tf.io.TFRecordWriter(str(path)) as writer:
    for i, label in enumerate(labels):
      example = tf.train.Example(features=tf.train.Features(feature={
          'image': tf.train.Feature(bytes_list=tf.train.BytesList(
              value=[encode_image(random_pixels((8, 8, 3), i))])),
          'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}))
      writer.write(example.SerializeToString())


def test_tfrecords_take_declared_class_names_and_check_labels(tmp_path):
  data = tmp_path / 'records'
  data.mkdir()
  _write_records(data / 'part.tfrecord', [0, 1] * 15)
  out = str(tmp_path / 'out')
  summary = ingest_pipeline.ingest(str(data), out, class_names=('cats', 'dogs'))
  assert summary.class_names == ['cats', 'dogs'] and summary.found == {'cats': 15, 'dogs': 15}
  for split in ('train', 'eval'):
    for example in read_examples(out, split):
      name = example.features.feature['class_name'].bytes_list.value[0].decode()
      assert name == ['cats', 'dogs'][feature(example, 'label')]
  with pytest.raises(ingest_pipeline.IngestError, match=r'TFRecord input needs data\.class_names'):
    ingest_pipeline.ingest(str(data), str(tmp_path / 'none'))
  _write_records(data / 'more.tfrecord', [2])
  with pytest.raises(ingest_pipeline.IngestError,
                     match=r"1 examples have a label outside data.class_names \['cats', 'dogs'\]"):
    ingest_pipeline.ingest(str(data), str(tmp_path / 'outside'), class_names=('cats', 'dogs'))
  with pytest.raises(ingest_pipeline.IngestError, match=r"Declared classes \['fish'\] have no"):
    ingest_pipeline.ingest(str(data), str(tmp_path / 'unused'),
                           class_names=('cats', 'dogs', 'birds', 'fish'))


def _record_offsets(path):
  """Byte offset of every record of an uncompressed TFRecord file."""
  import struct  # pylint: disable=g-import-not-at-top
  data, offsets, at = path.read_bytes(), [], 0
  while at < len(data):
    offsets.append(at)
    at += 12 + struct.unpack('<Q', data[at:at + 8])[0] + 4
  return offsets


def _flip_byte(path, at):
  data = bytearray(path.read_bytes())
  data[at] ^= 0xFF
  path.write_bytes(bytes(data))


def test_a_corrupt_record_is_quarantined_with_its_offset_and_the_file_read_on(tmp_path):
  data = tmp_path / 'records'
  data.mkdir()
  path = data / 'part.tfrecord'
  _write_records(path, [0, 1] * 15)
  offsets = _record_offsets(path)
  _flip_byte(path, offsets[4] + 12 + 20)  # inside the 5th record's data
  read = list(ingest_pipeline.read_records(str(path)))
  assert [offset for offset, _ in read] == offsets
  assert isinstance(read[4][1], ingest_pipeline.Refused)
  assert sum(isinstance(r, bytes) for _, r in read) == 29
  summary = ingest_pipeline.ingest(str(data), str(tmp_path / 'out'), class_names=('cats', 'dogs'))
  assert summary.total_skipped == 1 and sum(summary.found.values()) == 30
  assert sum(sum(summary.written[s].values()) for s in ('train', 'eval')) == 29
  record, = summary.skipped_files
  assert record == {'path': f'part.tfrecord@{offsets[4]}', 'class': '(corrupt TFRecord data)',
                    'reason': 'corrupt TFRecord record',
                    'detail': f'data checksum mismatch in the record at byte offset {offsets[4]}'}


def _gzip(path, target):
  import gzip  # pylint: disable=g-import-not-at-top
  target.write_bytes(gzip.compress(path.read_bytes()))


def test_tfrecords_in_split_folders_are_found_under_the_image_folders_split_names(tmp_path):
  from components.example_gen import image_listing  # pylint: disable=g-import-not-at-top
  for split in ('train', 'eval'):
    (tmp_path / split).mkdir()
    _write_records(tmp_path / split / 'part.tfrecord', [0, 1])
  listing = image_listing.list_folder(str(tmp_path))
  assert listing.tfrecord_files == {split: [str(tmp_path / split / 'part.tfrecord')]
                                    for split in ('train', 'eval')}
  assert set(listing.file_bytes.values()) == {(tmp_path / 'eval' / 'part.tfrecord').stat().st_size}


def test_a_corrupt_length_loses_its_record_and_reading_resumes_at_the_next(tmp_path):
  """Uncompressed: the next record is found by scanning; gzipped: no seeking, so the rest
  of the file is one entry."""
  data = tmp_path / 'records'
  data.mkdir()
  path = data / 'part.tfrecord'
  _write_records(path, [0, 1] * 15)
  offsets = _record_offsets(path)
  _flip_byte(path, offsets[20] + 1)  # the 21st record's length field
  summary = ingest_pipeline.ingest(str(data), str(tmp_path / 'out'), class_names=('cats', 'dogs'))
  assert sum(sum(summary.written[s].values()) for s in ('train', 'eval')) == 29
  record, = summary.skipped_files
  assert record['path'] == f'part.tfrecord@{offsets[20]}'
  assert record['reason'] == 'corrupt TFRecord length'
  assert record['detail'] == (f'length checksum mismatch at byte offset {offsets[20]}; '
                              f'{offsets[21] - offsets[20]:,} bytes skipped to the next record')
  _gzip(path, data / 'part.tfrecord.gz')
  path.unlink()
  summary = ingest_pipeline.ingest(str(data), str(tmp_path / 'gz'), class_names=('cats', 'dogs'),
                                   max_skipped_fraction=0.5)
  assert sum(sum(summary.written[s].values()) for s in ('train', 'eval')) == 20
  record, = summary.skipped_files
  assert record['path'] == f'part.tfrecord.gz@{offsets[20]}'
  assert record['reason'] == 'corrupt TFRecord length: rest of the file unread'
  (data / 'part.tfrecord.gz').unlink()
  _write_records(path, [0, 1] * 15)
  (data / 'cut.tfrecord').write_bytes(path.read_bytes()[:offsets[3] + 30])
  path.unlink()
  summary = ingest_pipeline.ingest(str(data), str(tmp_path / 'cut'), class_names=('cats', 'dogs'))
  assert sum(sum(summary.written[s].values()) for s in ('train', 'eval')) == 3
  assert [r['reason'] for r in summary.skipped_files] == ['truncated TFRecord file']


def test_the_split_of_tfrecord_examples_does_not_depend_on_how_files_are_cut(tmp_path):
  """No filename feature: the split is a content hash, so one file or three give every
  example the same split."""
  labels = [0, 1] * 20
  one, three = tmp_path / 'one', tmp_path / 'three'
  one.mkdir()
  three.mkdir()
  _write_records(one / 'all.tfrecord', labels)
  records = [r.numpy() for r in tf.data.TFRecordDataset(str(one / 'all.tfrecord'))]
  order = np.random.default_rng(0).permutation(len(records))  # and in another order
  for part, indices in enumerate(np.array_split(order, 3)):
    with tf.io.TFRecordWriter(str(three / f'part-{part}.tfrecord')) as writer:
      for i in indices:
        writer.write(records[i])

  def split_by_image(folder):
    out = str(tmp_path / f'out-{folder.name}')
    ingest_pipeline.ingest(str(folder), out, class_names=('cats', 'dogs'), eval_percent=25)
    return {feature(example, 'image'): split for split in ('train', 'eval')
            for example in read_examples(out, split)}

  first, second = split_by_image(one), split_by_image(three)
  assert len(first) == len(records) and first == second
  assert 0 < list(first.values()).count('eval') < len(records)


def test_a_large_tfrecord_file_is_read_as_byte_ranges_each_record_once(tmp_path, monkeypatch):
  data = tmp_path / 'records'
  data.mkdir()
  path = data / 'big.tfrecord'
  _write_records(path, [0, 1] * 20)
  offsets, size = _record_offsets(path), path.stat().st_size
  whole = list(ingest_pipeline.read_records(str(path)))
  sizes = {str(path): size}
  for range_bytes in (100, 997, 4000, size):  # records are ~250 bytes: ranges cut them
    items = ingest_pipeline.tfrecord_ranges([(None, str(path))], sizes, range_bytes)
    assert len(items) == -(-size // range_bytes)
    assert all(end is None for *_, end, _ in items) == (range_bytes == size)
    read = [r for _, p, start, end, n in items
            for r in ingest_pipeline.read_records(p, start, end, n)]
    assert read == whole
  _flip_byte(path, offsets[7] + 12 + 20)  # a corrupt record: the range holding it goes on
  read = [r for _, p, start, end, n in ingest_pipeline.tfrecord_ranges([(None, str(path))],
                                                                       sizes, 997)
          for r in ingest_pipeline.read_records(p, start, end, n)]
  assert [o for o, _ in read] == offsets
  assert [o for o, r in read if isinstance(r, ingest_pipeline.Refused)] == [offsets[7]]
  _flip_byte(path, offsets[12] + 2)  # and a corrupt length: reading resumes after it
  read = [r for _, p, start, end, n in ingest_pipeline.tfrecord_ranges([(None, str(path))],
                                                                       sizes, 997)
          for r in ingest_pipeline.read_records(p, start, end, n)]
  assert [o for o, _ in read] == offsets
  assert [o for o, r in read if isinstance(r, ingest_pipeline.Refused)] == [offsets[7],
                                                                          offsets[12]]
  _flip_byte(path, offsets[7] + 12 + 20)  # mended
  _flip_byte(path, offsets[12] + 2)
  whole_out, ranged_out = str(tmp_path / 'whole'), str(tmp_path / 'ranged')
  summary = ingest_pipeline.ingest(str(data), whole_out, class_names=('cats', 'dogs'))
  monkeypatch.setattr(ingest_pipeline, 'TFRECORD_RANGE_BYTES', 2000)
  ranged = ingest_pipeline.ingest(str(data), ranged_out, class_names=('cats', 'dogs'))
  assert ranged.written == summary.written and ranged.total_skipped == 0
  shards = os.listdir(os.path.join(ranged_out, 'Split-train'))
  assert len(shards) == -(-size // 2000) > 1  # one shard per range: spread over workers
  by_image = lambda out: {feature(e, 'image'): (s, feature(e, 'filename'))
                          for s in ('train', 'eval') for e in read_examples(out, s)}
  assert by_image(whole_out) == by_image(ranged_out)  # same splits, keys file@offset
  assert {k for _, k in by_image(whole_out).values()} == {
      f'big.tfrecord@{o}'.encode() for o in offsets}
