"""Turns a folder of class subfolders into sharded image TFRecords.

Pure Python (no TFX): scanning, validation, splitting and writing live here so
that they can be tested and reused; `image_folder_example_gen` wraps them as a
TFX component.

Layouts accepted under the data root:
  <root>/<class>/**/<image>                     hash split into train/eval
  <root>/train/<class>/..., <root>/validation/<class>/...   the folder's own split

Every entry found (file, or a folder that is not read: hidden, unreadable, a
symlink) is either written as an example or recorded in the quarantine report
with a fixed `reason` (and a free-text `detail`), so `found == written +
skipped` holds per class. Nothing outside the data root is ever read: symlinks
that leave it are refused, symlinked folders are not followed.

Every written example decodes with `tf.io.decode_image(..., channels=3,
expand_animations=False)` to the upright image: files TensorFlow cannot read as
they are (CMYK, EXIF-rotated, animated, 1-bit, ...) are re-encoded as PNG.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import hashlib
import io
import json
import logging
import os
import stat
import struct
import zlib
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp')
# Formats that tf.io.decode_image reads; each file is still test-decoded.
_TF_FORMATS = {'JPEG', 'PNG', 'GIF', 'BMP'}
_SIGNATURES = (b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n', b'GIF87a', b'GIF89a', b'BM')
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
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


class Refused(ValueError):
  """A file that cannot become an example: `reason` is a fixed category."""

  def __init__(self, reason: str, detail: str = ''):
    super().__init__(reason)
    self.reason = reason
    self.detail = detail


@dataclasses.dataclass(frozen=True)
class Candidate:
  path: str        # absolute path as found (may be a symlink)
  relpath: str     # relative to the data root, used for hashing and reports
  class_name: str  # printable class folder name, or ROOT_CLASS
  split: Optional[str]  # None: decided by hash
  problem: Optional[str] = None  # known before reading (hidden or unreadable folder)


@dataclasses.dataclass
class IngestSummary:
  class_names: List[str]
  written: Dict[str, Dict[str, int]]   # split -> class -> count
  skipped: Dict[str, int]              # class -> count
  found: Dict[str, int]                # class -> count
  skipped_files: List[Dict[str, str]]
  split_folders: Dict[str, str] = dataclasses.field(default_factory=dict)  # pre-split only
  warnings: List[str] = dataclasses.field(default_factory=list)

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
        'split_folders': self.split_folders,
        'warnings': self.warnings,
    }


def _display(path: str) -> str:
  """A printable UTF-8 form of a path: undecodable bytes as \\xNN, control characters escaped."""
  text = os.fsencode(path).decode('utf-8', 'backslashreplace')
  return ''.join(c if c.isprintable() else c.encode('unicode_escape').decode('ascii')
                 for c in text)


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
  """Class names in label order: the sorted (printable) class folder names."""
  if not os.path.isdir(root):
    raise IngestError(f'Data folder {root} does not exist or is not a folder.')
  presplit = find_presplit_dirs(root)
  folders = presplit.values() if presplit else [root]
  try:
    return sorted({_display(c) for f in folders for c in _visible_dirs(f)})
  except OSError as e:
    raise IngestError(f'Cannot list data folder {e.filename}: {e.strerror}.') from e


def _walk_files(folder: str) -> Iterator[Tuple[str, Optional[str]]]:
  """(path, problem) for every file below `folder`; folders that are not read are listed too."""
  errors: List[OSError] = []
  for dirpath, dirnames, filenames in os.walk(folder, onerror=errors.append):
    while errors:
      error = errors.pop(0)
      yield error.filename, f'unreadable folder: {error.strerror}'
    dirnames.sort()
    for name in sorted(filenames):
      yield os.path.join(dirpath, name), None
    for name in list(dirnames):
      path = os.path.join(dirpath, name)
      if os.path.islink(path):
        # Listed as a file, so that it is checked (and refused) instead of walked.
        dirnames.remove(name)
        yield path, None
      elif name.startswith('.'):
        dirnames.remove(name)
        yield path, 'hidden folder (not read)'
  while errors:
    error = errors.pop(0)
    yield error.filename, f'unreadable folder: {error.strerror}'


def scan(root: str) -> Tuple[List[str], List[Candidate]]:
  """Lists every file under the data root with the class and split it belongs to."""
  class_names = discover_classes(root)
  presplit = find_presplit_dirs(root)
  layout = list(presplit.items()) if presplit else [(None, root)]
  candidates = []

  def add(path: str, class_name: str, split: Optional[str], problem: Optional[str] = None):
    candidates.append(Candidate(path, os.path.relpath(path, root), class_name, split, problem))

  if presplit:  # files directly in the root belong to no class
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
      if not entry.is_dir(follow_symlinks=False):
        add(entry.path, ROOT_CLASS, None)
  for split, folder in layout:
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
      is_dir = entry.is_dir(follow_symlinks=False)
      if is_dir and not entry.name.startswith('.'):
        for path, problem in _walk_files(entry.path):
          add(path, _display(entry.name), split, problem)
      elif is_dir:
        add(entry.path, ROOT_CLASS, split, 'hidden folder (not read)')
      else:
        # A file directly in the root (or in train/, validation/): no class.
        add(entry.path, ROOT_CLASS, split)
  return class_names, candidates


def hash_split(relpath: str, eval_percent: int) -> str:
  """Deterministic split from the file's path relative to the data root."""
  digest = hashlib.md5(os.fsencode(relpath)).hexdigest()
  return 'eval' if int(digest[:8], 16) % 100 < eval_percent else 'train'


def max_file_bytes(max_pixels: int) -> int:
  """Largest file read: 8 bytes per allowed pixel (16-bit RGBA) plus 16 MiB of metadata."""
  return 8 * max_pixels + 16 * 2**20


def check_path(path: str, real_root: str) -> str:
  """Refuses hidden files and symlinks that are broken or leave the data root.

  Returns the path to open (a symlink's resolved target inside the root).
  """
  if os.path.basename(path).startswith('.'):
    raise Refused('hidden file')
  if not os.path.islink(path):
    return path
  try:
    os.stat(path)
  except OSError as e:
    raise Refused('symlink loop' if e.errno == errno.ELOOP else 'broken symlink',
                  e.strerror or '') from None
  target = os.path.realpath(path)
  if os.path.commonpath([real_root, target]) != real_root:
    raise Refused('symlink points outside the data folder')
  if os.path.isdir(target):
    raise Refused('symlink to a folder')
  return target


def _png_chunk_error(data: bytes) -> Optional[str]:
  """The first PNG chunk whose CRC is wrong (Pillow does not check IDAT's, TensorFlow does)."""
  pos = len(_PNG_SIGNATURE)
  while pos + 12 <= len(data):
    (length,) = struct.unpack('>I', data[pos:pos + 4])
    end = pos + 12 + length
    if end > len(data):
      return None  # truncated: reported by the decoder
    kind = data[pos + 4:pos + 8]
    (crc,) = struct.unpack('>I', data[end - 4:end])
    if zlib.crc32(data[pos + 4:end - 4]) & 0xFFFFFFFF != crc:
      return f'bad checksum in {kind.decode("latin-1")!r} chunk'
    if kind == b'IEND':
      break
    pos = end
  return None


def _tf_decodes(data: bytes, width: int, height: int) -> bool:
  """Whether the Transform and serving decoder read the bytes as they are, at this size."""
  try:
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
  except (tf.errors.OpError, ValueError):
    return False
  return tuple(image.shape[:2]) == (height, width)


def _to_png(image: Image.Image) -> bytes:
  """Upright 8-bit RGB PNG (EXIF orientation applied, 16-bit scaled, alpha dropped)."""
  image = ImageOps.exif_transpose(image)
  if image.mode.startswith('I') or image.mode == 'F':
    pixels = np.asarray(image)
    if image.mode != 'F':
      pixels = pixels.astype(np.int64) >> 8  # 16-bit samples
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), 'L')
  out = io.BytesIO()
  image.convert('RGB').save(out, format='PNG')
  return out.getvalue()


def read_image(path: str, real_root: str, max_pixels: int) -> bytes:
  """Returns image bytes that tf.io.decode_image reads upright, or raises Refused(reason)."""
  target = check_path(path, real_root)
  if not path.lower().endswith(IMAGE_EXTENSIONS):
    raise Refused('not an image file extension')
  try:
    st = os.stat(target)
  except OSError as e:
    raise Refused(f'unreadable: {e.strerror}') from e
  if not stat.S_ISREG(st.st_mode):
    raise Refused('not a regular file')  # a FIFO would block, a device never end
  if st.st_size > max_file_bytes(max_pixels):
    raise Refused('file too large', f'{st.st_size} bytes > {max_file_bytes(max_pixels)}')
  try:
    with open(target, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise Refused(f'unreadable: {e.strerror}') from e
  if not data:
    raise Refused('empty file')
  if data.startswith(_PNG_SIGNATURE):
    chunk_error = _png_chunk_error(data)
    if chunk_error:
      raise Refused('corrupt image data', chunk_error)
  try:
    with Image.open(io.BytesIO(data)) as probe:
      width, height = probe.size  # from the header: nothing decoded yet
      if width * height > max_pixels:
        raise Refused(f'too many pixels ({width}x{height} > {max_pixels})')
      animated = getattr(probe, 'is_animated', False)
      try:
        orientation = probe.getexif().get(_EXIF_ORIENTATION, 1)
      except Exception:  # pylint: disable=broad-except  # unreadable EXIF: keep as stored
        orientation = 1
      probe.load()  # full decode of the first frame: catches truncated and corrupt files
      if (probe.format in _TF_FORMATS and orientation == 1 and not animated
          and _tf_decodes(data, width, height)):
        return data
      # CMYK, 1-bit, EXIF-rotated, animated (first frame), ...: re-encoded upright.
      return _to_png(probe)
  except Refused:
    raise
  except Image.DecompressionBombError as e:
    raise Refused('decompression bomb (declared size too large)', str(e)) from e
  except Image.UnidentifiedImageError as e:
    if data.startswith(_SIGNATURES):
      raise Refused('corrupt image data', 'image header not readable') from e
    raise Refused('not a readable image', 'content is not JPEG, PNG, GIF or BMP') from e
  except Exception as e:  # pylint: disable=broad-except  # Pillow raises many types
    detail = f'{type(e).__name__}: {e}'
    if 'truncated' in str(e).lower():
      raise Refused('truncated image', detail) from e
    raise Refused('corrupt image data', detail) from e


def make_example(image: bytes, label: int, relpath: str) -> tf.train.Example:
  feature = {
      'image': tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
      'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
      'filename': tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[_display(relpath).encode('utf-8')])),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature))


def ingest(root: str, output_dir: str, *, eval_percent: int = 20, num_shards: int = 4,
           max_skipped_fraction: float = 0.5,
           max_image_pixels: int = 40_000_000) -> IngestSummary:
  """Writes `<output_dir>/Split-{train,eval}/*.gz` TFRecords plus the vocabulary and reports."""
  root = os.path.abspath(root)
  class_names, candidates = scan(root)
  presplit = find_presplit_dirs(root)
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
        if cand.problem:
          raise Refused(cand.problem)
        if cand.class_name == ROOT_CLASS:
          check_path(cand.path, real_root)
          raise Refused('not inside a class folder')
        image = read_image(cand.path, real_root, max_image_pixels)
      except Refused as refusal:
        skipped[cand.class_name] += 1
        record = {'path': _display(cand.relpath), 'class': cand.class_name,
                  'reason': refusal.reason}
        if refusal.detail:
          record['detail'] = refusal.detail
        skipped_files.append(record)
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

  keys = class_names + ([ROOT_CLASS] if found[ROOT_CLASS] else [])
  summary = IngestSummary(
      class_names=class_names,
      written={s: {c: written[s][c] for c in class_names} for s in SPLITS},
      skipped={c: skipped[c] for c in keys}, found={c: found[c] for c in keys},
      skipped_files=skipped_files,
      split_folders={s: os.path.basename(d) for s, d in presplit.items()} if presplit else {})
  summary.warnings = _warnings(root, summary)
  _write_reports(output_dir, summary)
  _check_trainable(summary, max_skipped_fraction)
  return summary


def _warnings(root: str, summary: IngestSummary) -> List[str]:
  """Problems that do not stop training: unread folders, classes absent from the eval split."""
  warnings = []
  if summary.split_folders:
    used = set(summary.split_folders.values())
    ignored = [_display(d) for d in _visible_dirs(root) if d not in used]
    if ignored:
      warnings.append(f'Folders {ignored} were not read: a pre-split data folder uses only '
                      f'{sorted(used)}.')
  else:
    for name in summary.class_names:
      if summary.written['train'][name] and not summary.written['eval'][name]:
        warnings.append(f"Class '{name}' has no eval example ({summary.written['train'][name]} "
                        'train): its eval metrics will be missing.')
  return warnings


def _write_reports(output_dir: str, summary: IngestSummary) -> None:
  """Vocabulary (UTF-8), quarantine.jsonl and ingest_summary.json (ASCII JSON, always valid)."""
  with open(os.path.join(output_dir, VOCABULARY_FILE), 'w', encoding='utf-8') as f:
    f.write(''.join(name + '\n' for name in summary.class_names))
  with open(os.path.join(output_dir, QUARANTINE_FILE), 'w', encoding='utf-8') as f:
    for record in summary.skipped_files:
      f.write(json.dumps(record) + '\n')
  with open(os.path.join(output_dir, SUMMARY_FILE), 'w', encoding='utf-8') as f:
    json.dump(summary.to_json(), f, indent=2)
  for record in summary.skipped_files[:20]:
    logging.warning('Skipped %s: %s', record['path'], record['reason'])
  if summary.total_skipped:
    logging.warning('Skipped %d of %d files; full list in %s.', summary.total_skipped,
                    summary.total_found, os.path.join(output_dir, QUARANTINE_FILE))
  for warning in summary.warnings:
    logging.warning(warning)


def _check_trainable(summary: IngestSummary, max_skipped_fraction: float) -> None:
  """Fails when what is left cannot train a model; the message says what to fix."""
  names = summary.class_names
  if len(names) < 2:
    hint = ''
    if summary.found.get(ROOT_CLASS):
      hint = (f' {summary.found[ROOT_CLASS]} files lie directly in the data folder: put the '
              'images of each class in their own subfolder.')
    if set(names) & {n for group in PRESPLIT_DIRS.values() for n in group}:
      hint += ' A pre-split folder needs both train/ and validation/.'
    raise IngestError(f'Need at least two classes (one subfolder each), found '
                      f'{names or "none"}.{hint}')
  if summary.total_found and summary.total_skipped / summary.total_found > max_skipped_fraction:
    raise IngestError(f'{summary.total_skipped} of {summary.total_found} files could not be '
                      f'used (limit data.max_skipped_fraction={max_skipped_fraction}); '
                      f'reasons in {QUARANTINE_FILE}.')
  empty = [c for c in names if not sum(summary.written[s][c] for s in SPLITS)]
  if empty:
    skipped = sum(summary.skipped.get(c, 0) for c in empty)
    raise IngestError(
        f'Class folders {empty} have no usable images ({skipped} '
        f'skipped, see {QUARANTINE_FILE}): add images or remove the folders '
        '(every class folder is a model output).')
  folders = summary.split_folders
  gaps = [f"'{c}' in {folders[s]}/" for s in folders for c in names if not summary.written[s][c]]
  if gaps:
    raise IngestError(
        f'No usable images for class {", ".join(gaps)}: every class needs images in both '
        f'{folders["train"]}/ and {folders["eval"]}/ (check the class folder names\' spelling).')
  for s in SPLITS:
    if not sum(summary.written[s].values()):
      change = 'raise' if s == 'eval' else 'lower'
      raise IngestError(f'The {s} split is empty: add images or {change} data.eval_percent.')


def fingerprint(root: str) -> str:
  """A cheap digest of the folder's files for pipeline caching: names, sizes, mtimes,
  and mode and ctime, so that fixing a file's permissions also counts as a change."""
  digest = hashlib.sha256()
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in sorted(dirnames + filenames):
      path = os.path.join(dirpath, name)
      try:
        st = os.lstat(path)
      except OSError:
        continue
      digest.update(os.fsencode(os.path.relpath(path, root)))
      digest.update(f':{st.st_size}:{st.st_mtime_ns}:{st.st_mode}:{st.st_ctime_ns};'.encode())
  return digest.hexdigest()[:16]
