"""Ingests the bad-input catalogue (tests/bad_inputs.py): per-entry outcomes, reconciled counts."""

import json
import os
import resource
import subprocess
import sys
import tempfile
from typing import Dict, Tuple

import numpy as np
import pytest
import tensorflow as tf

from components.example_gen import image_ingest, image_listing, ingest_pipeline
from tests import bad_inputs
from trainer import orientation

ENTRIES = bad_inputs.entries()


def _examples(output_dir: str) -> Dict[str, Tuple[str, tf.train.Example]]:
  """Reported path -> (split, example) of everything ingestion wrote."""
  examples = {}
  for split in image_listing.SPLITS:
    files = tf.io.gfile.glob(os.path.join(output_dir, f'Split-{split}', '*.gz'))
    for record in tf.data.TFRecordDataset(files, compression_type='GZIP'):
      example = tf.train.Example.FromString(record.numpy())
      name = example.features.feature['filename'].bytes_list.value[0].decode('utf-8')
      assert name not in examples, f'{name} written twice'
      examples[name] = (split, example)
  return examples


_INGEST = '''
import json, sys
from components.example_gen import ingest_pipeline
ingest_pipeline.ingest(sys.argv[1], sys.argv[2], **json.loads(sys.argv[3]))
'''


@pytest.fixture(scope='module')
def ingested(tmp_path_factory):
  """The catalogue ingested in a process that file permissions stop (root: without
  CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH), so the permission cases run under root too."""
  tmp = tmp_path_factory.mktemp('bad_inputs')
  catalogue = bad_inputs.generate(str(tmp))
  out = str(tmp / 'out')
  try:
    done = subprocess.run(
        [*bad_inputs.UNPRIVILEGED, sys.executable, '-c', _INGEST, catalogue.root, out,
         json.dumps(bad_inputs.INGEST_KWARGS)],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    yield catalogue, ingest_pipeline.load_summary(out), out, _examples(out)
  finally:
    bad_inputs.make_writable(catalogue.root)


def test_permission_cases_run_unprivileged():
  """The fixture's process cannot read a mode-0 file, even when the tests run as root."""
  script = 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY)'
  with tempfile.NamedTemporaryFile() as locked:
    os.chmod(locked.name, 0)
    done = subprocess.run([*bad_inputs.UNPRIVILEGED, sys.executable, '-c', script, locked.name],
                          capture_output=True, text=True, check=False)
  assert done.returncode != 0 and 'PermissionError' in done.stderr, done.stderr


@pytest.mark.parametrize('entry', ENTRIES, ids=[e.key for e in ENTRIES])
def test_each_entry_is_written_or_quarantined_with_its_reason(ingested, entry):
  _, summary, _, examples = ingested
  records = {r['path']: r for r in summary.skipped_files}
  if entry.expected != bad_inputs.ACCEPTED:
    assert entry.key not in examples
    assert records[entry.key]['reason'] == entry.expected, records[entry.key]
    assert records[entry.key]['class'] == entry.class_name
    return
  assert entry.key not in records, records.get(entry.key)
  _, example = examples[entry.key]
  features = example.features.feature
  assert features['label'].int64_list.value[0] == summary.class_names.index(entry.class_name)
  stored = features['image'].bytes_list.value[0]
  decoded = tf.io.decode_image(stored, channels=3, expand_animations=False)
  # As the model decodes it: a JPEG's EXIF orientation applied (trainer/orientation.py).
  decoded = orientation.upright(decoded, orientation.jpeg_orientation(stored)).numpy()
  assert decoded.dtype == np.uint8 and decoded.ndim == 3 and decoded.shape[2] == 3
  if entry.pixels is not None:
    assert decoded.shape == entry.pixels.shape  # e.g. EXIF-rotated: width and height swapped
    error = np.abs(decoded.astype(np.int64) - entry.pixels).mean()
    assert error <= entry.tolerance, f'mean pixel error {error}'


def test_every_entry_is_accounted_for_once(ingested):
  catalogue, summary, _, examples = ingested
  reported = [r['path'] for r in summary.skipped_files]
  assert len(reported) == len(set(reported))
  assert set(examples) | set(reported) == set(catalogue.expected)
  assert not set(examples) & set(reported)


def test_counts_reconcile_per_class(ingested):
  catalogue, summary, _, _ = ingested
  assert summary.class_names == bad_inputs.CLASS_NAMES
  expected = catalogue.classes()
  assert set(summary.found) == set(expected)
  for name, counts in expected.items():
    written = sum(summary.written[s].get(name, 0) for s in image_listing.SPLITS)
    ignored = summary.ignored.get(name, 0)
    assert summary.found[name] == written + summary.skipped[name] + ignored, name
    assert (summary.found[name], written, summary.skipped[name], ignored) == (
        counts['found'], counts['written'], counts['skipped'], counts['ignored']), name
  assert summary.total_found == len(catalogue.entries)


def test_reports_are_valid_json_for_any_file_name(ingested):
  catalogue, summary, out, _ = ingested
  with open(os.path.join(out, ingest_pipeline.QUARANTINE_FILE), 'rb') as f:
    raw = f.read()
  raw.decode('ascii')  # non-ASCII names are escaped, undecodable bytes shown as \xNN
  records = [json.loads(line) for line in raw.decode().splitlines()]
  assert records == summary.skipped_files
  for record in records:
    assert record.get('ignored', False) == (record['reason'] in image_ingest.IGNORED_REASONS)
    for value in record.values():
      if isinstance(value, str):
        value.encode('utf-8')  # no lone surrogates from undecodable names
  with open(os.path.join(out, ingest_pipeline.SUMMARY_FILE), encoding='ascii') as f:
    report = json.load(f)
  assert report['found'] == summary.found and report['written'] == summary.written
  assert report['total_found'] == len(catalogue.entries)
  with open(os.path.join(out, ingest_pipeline.VOCABULARY_FILE), encoding='utf-8') as f:
    assert f.read().splitlines() == bad_inputs.CLASS_NAMES


def test_decompression_bomb_and_pixel_limit_are_refused_from_the_header(tmp_path):
  real_root = os.path.realpath(str(tmp_path))
  bomb = tmp_path / 'bomb.png'
  bomb.write_bytes(bad_inputs.declared_png(100_000, 100_000))  # 30 GB if decoded
  large = tmp_path / 'large.png'
  large.write_bytes(bad_inputs.declared_png(8_000, 8_000))
  before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
  # Pillow's own guard holds even when the configured limit is raised absurdly high.
  with pytest.raises(image_ingest.Refused, match='decompression bomb'):
    image_ingest.read_image(str(bomb), real_root, max_pixels=10**12)
  with pytest.raises(image_ingest.Refused, match=r'too many pixels \(8000x8000 > 40000000\)'):
    image_ingest.read_image(str(large), real_root, max_pixels=40_000_000)
  grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
  assert grown_mib < 100, f'peak memory grew by {grown_mib:.0f} MiB'
  assert bomb.stat().st_size < 1000


@pytest.mark.parametrize('build', bad_inputs.FOLDER_FAILURES, ids=lambda f: f.__name__)
def test_folders_that_cannot_train_fail_clearly(tmp_path, build):
  root = str(tmp_path / 'data')
  os.makedirs(root)
  message = build(root)
  out = str(tmp_path / 'out')
  with pytest.raises(ingest_pipeline.IngestError, match=message):
    ingest_pipeline.ingest(root, out)
  with open(os.path.join(out, ingest_pipeline.SUMMARY_FILE)) as f:
    json.load(f)  # the reports are written before the run fails


def test_presplit_folder_reports_stray_files_and_unread_folders(tmp_path):
  root = tmp_path / 'data'
  for split in ('train', 'validation'):
    for name in ('cats', 'dogs'):
      (root / split / name).mkdir(parents=True)
      image = bad_inputs.encode(bad_inputs.random_pixels((8, 8, 3)))
      (root / split / name / 'a.png').write_bytes(image)
  (root / 'test' / 'cats').mkdir(parents=True)
  (root / 'README.txt').write_text('cats and dogs')
  (root / 'train' / 'stray.png').write_bytes(b'')
  summary = ingest_pipeline.ingest(str(root), str(tmp_path / 'out'))
  assert summary.written == {'train': {'cats': 1, 'dogs': 1}, 'eval': {'cats': 1, 'dogs': 1}}
  assert {r['path']: r['reason'] for r in summary.skipped_files} == {
      'README.txt': 'not an image file extension', 'train/stray.png': 'not inside a class folder'}
  assert summary.found[image_listing.ROOT_CLASS] == 2
  assert summary.skipped[image_listing.ROOT_CLASS] == summary.ignored[image_listing.ROOT_CLASS] == 1
  assert summary.split_folders == {'train': 'train', 'eval': 'validation'}
  assert any("['test'] were not read" in w for w in summary.warnings), summary.warnings


def test_files_swapped_after_listing_are_never_followed(tmp_path):
  """Listing and reading are apart in time: what replaces a listed file is refused on open."""
  root, outside = tmp_path / 'data', tmp_path / 'outside'
  (root / 'cats').mkdir(parents=True)
  (root / 'dogs').mkdir()
  outside.mkdir()
  image = bad_inputs.encode(bad_inputs.random_pixels((8, 8, 3)))
  (outside / 'secret.png').write_bytes(image)
  for name in ('to_symlink.png', 'to_zero.png', 'to_fifo.png'):
    (root / 'cats' / name).write_bytes(image)
  (root / 'dogs' / 'a.png').write_bytes(image)
  listing = image_listing.list_folder(str(root))
  (root / 'cats' / 'to_symlink.png').unlink()
  (root / 'cats' / 'to_symlink.png').symlink_to(outside / 'secret.png')
  (root / 'cats' / 'to_zero.png').unlink()
  (root / 'cats' / 'to_zero.png').symlink_to('/dev/zero')
  (root / 'cats' / 'to_fifo.png').unlink()
  os.mkfifo(root / 'cats' / 'to_fifo.png')
  (root / 'dogs').rename(tmp_path / 'dogs_moved')
  (root / 'dogs').symlink_to(tmp_path / 'dogs_moved')  # a folder swapped for a symlink
  real_root = os.path.realpath(root)
  reasons = {}
  for cand in listing.candidates:
    with pytest.raises(image_ingest.Refused) as refused:
      image_ingest.read_image(cand.path, real_root, max_pixels=10**6)
    reasons[cand.relpath] = refused.value.reason
  assert reasons == {
      'cats/to_fifo.png': 'not a regular file',
      'cats/to_symlink.png': 'symlink points outside the data folder',
      'cats/to_zero.png': 'symlink points outside the data folder',
      'dogs/a.png': 'symlink points outside the data folder'}


def test_reads_stop_at_the_byte_limit(tmp_path):
  (tmp_path / 'big.png').write_bytes(bad_inputs.encode(bad_inputs.random_pixels((64, 64, 3))))
  with pytest.raises(image_ingest.Refused, match='file too large'):
    image_ingest.read_image(str(tmp_path / 'big.png'), str(tmp_path), 10**6, max_bytes=1000)
