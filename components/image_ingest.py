"""Turns a folder of class subfolders into sharded image TFRecords.

Pure Python (no TFX): scanning, validation, splitting and writing live here so
that they can be tested and reused; `image_folder_example_gen` wraps them as a
TFX component.

Layouts accepted under the data root:
  <root>/<class>/**/<image>                     hash split into train/eval
  <root>/train/<class>/..., <root>/validation/<class>/...   the folder's own split

Every file found is either written as an example or recorded in the quarantine
report with a reason, so `found == written + skipped` holds per class.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import logging
import os
from typing import Dict, Iterator, List, Optional, Tuple

import tensorflow as tf
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp')
# Formats and modes that tf.io.decode_image reads as they are.
_TF_FORMATS = {'JPEG', 'PNG', 'GIF', 'BMP'}
_TF_MODES = {'L', 'RGB', 'RGBA', 'P', 'LA'}
PRESPLIT_DIRS = {'train': ('train',), 'eval': ('validation', 'eval', 'val')}
SPLITS = ('train', 'eval')
VOCABULARY_FILE = 'label_vocabulary.txt'
QUARANTINE_FILE = 'quarantine.jsonl'
SUMMARY_FILE = 'ingest_summary.json'
ROOT_CLASS = '(root)'
_EXIF_ORIENTATION = 0x0112
_PROGRESS_EVERY = 500


class IngestError(ValueError):
  """What is left after skipping bad files cannot train a model."""


@dataclasses.dataclass(frozen=True)
class Candidate:
  path: str        # absolute path as found (may be a symlink)
  relpath: str     # relative to the data root, used for hashing and reports
  class_name: str
  split: Optional[str]  # None: decided by hash


@dataclasses.dataclass
class IngestSummary:
  class_names: List[str]
  written: Dict[str, Dict[str, int]]   # split -> class -> count
  skipped: Dict[str, int]              # class -> count
  found: Dict[str, int]                # class -> count
  skipped_files: List[Dict[str, str]]

  @property
  def total_found(self) -> int:
    return sum(self.found.values())

  @property
  def total_skipped(self) -> int:
    return sum(self.skipped.values())

  def to_json(self) -> Dict:
    return {
        'class_names': self.class_names,
        'written': self.written,
        'skipped': self.skipped,
        'found': self.found,
        'total_found': self.total_found,
        'total_skipped': self.total_skipped,
    }


def _display(path: str) -> str:
  """A printable form of a path that may not be valid UTF-8."""
  return os.fsencode(path).decode('utf-8', 'backslashreplace')


def _visible_dirs(folder: str) -> List[str]:
  return sorted(e.name for e in os.scandir(folder)
                if not e.name.startswith('.') and e.is_dir(follow_symlinks=False))


def find_presplit_dirs(root: str) -> Optional[Dict[str, str]]:
  """Returns {'train': dir, 'eval': dir} when the folder is already split."""
  found = {}
  for split, names in PRESPLIT_DIRS.items():
    for name in names:
      if os.path.isdir(os.path.join(root, name)):
        found[split] = os.path.join(root, name)
        break
  return found if len(found) == 2 else None


def discover_classes(root: str) -> List[str]:
  """Class names in label order: the sorted class folder names."""
  if not os.path.isdir(root):
    raise IngestError(f'Data folder {root} does not exist or is not a folder.')
  presplit = find_presplit_dirs(root)
  folders = presplit.values() if presplit else [root]
  return sorted({c for f in folders for c in _visible_dirs(f)})


def _walk_files(folder: str) -> Iterator[str]:
  for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
    dirnames.sort()
    for name in sorted(filenames):
      yield os.path.join(dirpath, name)
    # Symlinked folders appear in dirnames; list them as files so they are
    # checked (and refused when they leave the root) instead of silently walked.
    for name in list(dirnames):
      if os.path.islink(os.path.join(dirpath, name)):
        dirnames.remove(name)
        yield os.path.join(dirpath, name)


def scan(root: str) -> Tuple[List[str], List[Candidate]]:
  """Lists every file under the data root with the class and split it belongs to."""
  class_names = discover_classes(root)
  presplit = find_presplit_dirs(root)
  layout = presplit.items() if presplit else [(None, root)]
  candidates = []
  for split, folder in layout:
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
      if entry.is_dir(follow_symlinks=False) and not entry.name.startswith('.'):
        for path in _walk_files(entry.path):
          candidates.append(Candidate(path, os.path.relpath(path, root), entry.name, split))
      elif split is None or not entry.is_dir(follow_symlinks=False):
        # A file directly in the root (or in train/, validation/): no class.
        candidates.append(Candidate(entry.path, os.path.relpath(entry.path, root),
                                    ROOT_CLASS, split))
  return class_names, candidates


def hash_split(relpath: str, eval_percent: int) -> str:
  """Deterministic split from the file's path relative to the data root."""
  digest = hashlib.md5(os.fsencode(relpath)).hexdigest()
  return 'eval' if int(digest[:8], 16) % 100 < eval_percent else 'train'


def read_image(path: str, real_root: str, max_pixels: int) -> bytes:
  """Returns image bytes that tf.io.decode_image reads upright, or raises ValueError(reason)."""
  if os.path.islink(path):
    target = os.path.realpath(path)
    if not os.path.exists(target):
      raise ValueError('broken symlink or symlink loop')
    if os.path.commonpath([real_root, target]) != real_root:
      raise ValueError('symlink points outside the data folder')
    if os.path.isdir(target):
      raise ValueError('symlink to a folder')
  name = os.path.basename(path)
  if name.startswith('.'):
    raise ValueError('hidden file')
  if not name.lower().endswith(IMAGE_EXTENSIONS):
    raise ValueError('not an image file extension')
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise ValueError(f'unreadable: {e.strerror}') from e
  if not data:
    raise ValueError('empty file')
  try:
    with Image.open(io.BytesIO(data)) as probe:
      width, height = probe.size
      if width * height > max_pixels:
        raise ValueError(f'too many pixels ({width}x{height} > {max_pixels})')
      image_format, mode = probe.format, probe.mode
      orientation = probe.getexif().get(_EXIF_ORIENTATION, 1)
      probe.load()  # full decode: catches truncated and corrupt files
      if image_format in _TF_FORMATS and mode in _TF_MODES and orientation == 1:
        return data
      # CMYK, 16-bit, EXIF-rotated, ...: re-encode upright as 8-bit PNG.
      upright = ImageOps.exif_transpose(probe).convert('RGB')
      out = io.BytesIO()
      upright.save(out, format='PNG')
      return out.getvalue()
  except ValueError:
    raise
  except Image.DecompressionBombError as e:
    raise ValueError('decompression bomb (declared size too large)') from e
  except Exception as e:  # PIL raises many types for bad data.
    raise ValueError(f'not a readable image: {type(e).__name__}: {e}') from e


def make_example(image: bytes, label: int, relpath: str) -> tf.train.Example:
  feature = {
      'image': tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
      'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
      'filename': tf.train.Feature(bytes_list=tf.train.BytesList(value=[os.fsencode(relpath)])),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature))


def ingest(root: str, output_dir: str, *, eval_percent: int = 20, num_shards: int = 4,
           max_skipped_fraction: float = 0.5,
           max_image_pixels: int = 40_000_000) -> IngestSummary:
  """Writes `<output_dir>/Split-{train,eval}/*.gz` TFRecords plus the vocabulary and reports."""
  root = os.path.abspath(root)
  class_names, candidates = scan(root)
  labels = {name: i for i, name in enumerate(class_names)}
  real_root = os.path.realpath(root)
  found = collections.Counter(c.class_name for c in candidates)
  written = {s: collections.Counter() for s in SPLITS}
  skipped = collections.Counter()
  skipped_files = []
  writers = {}
  try:
    for s in SPLITS:
      os.makedirs(os.path.join(output_dir, f'Split-{s}'), exist_ok=True)
      writers[s] = [tf.io.TFRecordWriter(
          os.path.join(output_dir, f'Split-{s}', f'data_tfrecord-{i:05d}-of-{num_shards:05d}.gz'),
          options='GZIP') for i in range(num_shards)]
    for n, cand in enumerate(candidates, 1):
      try:
        if cand.class_name == ROOT_CLASS:
          raise ValueError('not inside a class folder')
        image = read_image(cand.path, real_root, max_image_pixels)
      except ValueError as reason:
        skipped[cand.class_name] += 1
        skipped_files.append({'path': _display(cand.relpath), 'class': cand.class_name,
                              'reason': str(reason)})
      else:
        split = cand.split or hash_split(cand.relpath, eval_percent)
        count = sum(written[split].values())
        example = make_example(image, labels[cand.class_name], cand.relpath)
        writers[split][count % num_shards].write(example.SerializeToString())
        written[split][cand.class_name] += 1
      if n % _PROGRESS_EVERY == 0 or n == len(candidates):
        logging.info('Ingested %d/%d files (%d skipped).', n, len(candidates), sum(skipped.values()))
  finally:
    for shard_writers in writers.values():
      for w in shard_writers:
        w.close()

  summary = IngestSummary(
      class_names=class_names,
      written={s: {c: written[s][c] for c in class_names} for s in SPLITS},
      skipped=dict(skipped), found=dict(found), skipped_files=skipped_files)
  _write_reports(output_dir, summary)
  _check_trainable(summary, max_skipped_fraction)
  return summary


def _write_reports(output_dir: str, summary: IngestSummary) -> None:
  with open(os.path.join(output_dir, VOCABULARY_FILE), 'w') as f:
    f.write(''.join(name + '\n' for name in summary.class_names))
  with open(os.path.join(output_dir, QUARANTINE_FILE), 'w') as f:
    for record in summary.skipped_files:
      f.write(json.dumps(record) + '\n')
  with open(os.path.join(output_dir, SUMMARY_FILE), 'w') as f:
    json.dump(summary.to_json(), f, indent=2)
  for record in summary.skipped_files[:20]:
    logging.warning('Skipped %s: %s', record['path'], record['reason'])
  if summary.total_skipped:
    logging.warning('Skipped %d of %d files; full list in %s.', summary.total_skipped,
                    summary.total_found, os.path.join(output_dir, QUARANTINE_FILE))


def _check_trainable(summary: IngestSummary, max_skipped_fraction: float) -> None:
  usable = [c for c in summary.class_names
            if sum(summary.written[s][c] for s in SPLITS) > 0]
  if len(usable) < 2:
    raise IngestError(f'Need at least two classes with images, found {usable or "none"} '
                      f'(class folders: {summary.class_names or "none"}).')
  for s in SPLITS:
    if not sum(summary.written[s].values()):
      raise IngestError(f'The {s} split is empty; add images or lower data.eval_percent.')
  if summary.total_found and summary.total_skipped / summary.total_found > max_skipped_fraction:
    raise IngestError(f'{summary.total_skipped} of {summary.total_found} files could not be '
                      f'used (limit data.max_skipped_fraction={max_skipped_fraction}).')


def fingerprint(root: str) -> str:
  """A cheap digest of the folder's files (names, sizes, mtimes) for pipeline caching."""
  digest = hashlib.sha256()
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in sorted(filenames):
      path = os.path.join(dirpath, name)
      try:
        st = os.lstat(path)
      except OSError:
        continue
      digest.update(os.fsencode(os.path.relpath(path, root)))
      digest.update(f':{st.st_size}:{st.st_mtime_ns};'.encode())
  return digest.hexdigest()[:16]
