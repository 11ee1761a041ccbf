"""Lists an image data folder on any filesystem: its layout, classes and every entry.

Layouts accepted under the data root:
  <root>/<class>/**/<image>                                 hash split into train/eval
  <root>/train/<class>/..., <root>/validation/<class>/...   the folder's own split
  <root>/*.tfrecord* (or train/ + validation/ of them)      image TFRecords

A local folder is walked with `os` (hidden folders, symlinks, FIFOs and unreadable
folders are told apart); any other URI (gs://, s3://, ...) is listed through Beam's
`FileSystems`, so the same code serves every filesystem Beam can reach.

Every entry found is listed once, as a `Candidate` with its class and split (or the
reason it cannot be read), so that ingestion can account for all of them. The listing
runs when ExampleGen runs, never while the pipeline is built.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
import posixpath
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from apache_beam.io.filesystems import FileSystems

PRESPLIT_DIRS = {'train': ('train',), 'eval': ('validation', 'eval', 'val')}
SPLITS = ('train', 'eval')
ROOT_CLASS = '(root)'
TFRECORD_PATTERNS = ('*.tfrecord', '*.tfrecord.gz', '*.tfrecord-*', '*.tfrecords', '*.gz')
HIDDEN_FOLDER = 'hidden folder (not read)'


class ListingError(ValueError):
  """The data folder cannot be listed, or its class folders are ambiguous."""


@dataclasses.dataclass(frozen=True)
class Candidate:
  path: str                # full path or URI as found (may be a symlink)
  relpath: str             # relative to the data root, '/'-separated: split hash, reports
  class_name: str          # printable class folder name, ROOT_CLASS, or '' (`list_files`)
  split: Optional[str]     # None: decided by hash
  problem: Optional[str] = None  # known before reading (hidden or unreadable folder)


@dataclasses.dataclass
class Listing:
  """What the data folder holds, as found when ExampleGen runs."""
  root: str
  class_names: List[str]
  candidates: List[Candidate]
  split_folders: Dict[str, str]     # {'train': 'train', 'eval': 'validation'} when pre-split
  unread_folders: List[str]         # top-level folders a pre-split layout does not use
  tfrecord_files: Dict[str, List[str]] = dataclasses.field(default_factory=dict)  # split|'' -> files
  file_bytes: Dict[str, int] = dataclasses.field(default_factory=dict)  # TFRecord file -> size


def is_local(path: str) -> bool:
  return '://' not in path


def join(root: str, *parts: str) -> str:
  return os.path.join(root, *parts) if is_local(root) else posixpath.join(root, *parts)


def display(path: str) -> str:
  """A printable UTF-8 form of a path: undecodable bytes as \\xNN, control characters escaped."""
  text = os.fsencode(path).decode('utf-8', 'backslashreplace')
  return ''.join(c if c.isprintable() else c.encode('unicode_escape').decode('ascii')
                 for c in text)


def _class_names(raw_names: List[str]) -> List[str]:
  """Sorted printable names; two folders that print the same would merge: refused."""
  by_display: Dict[str, str] = {}
  for raw in sorted(set(raw_names)):
    shown = display(raw)
    if shown in by_display and by_display[shown] != raw:
      raise ListingError(
          f'Class folders {by_display[shown]!r} and {raw!r} have the same printable name '
          f'{shown!r}: rename one of them.')
    by_display[shown] = raw
  return sorted(by_display)


# Local folders ------------------------------------------------------------------------

def _visible_dirs(folder: str) -> List[str]:
  return sorted(e.name for e in os.scandir(folder)
                if not e.name.startswith('.') and e.is_dir(follow_symlinks=False))


def _local_presplit(root: str) -> Dict[str, str]:
  found = {}
  for split, names in PRESPLIT_DIRS.items():
    for name in names:
      if os.path.isdir(os.path.join(root, name)):
        found[split] = name
        break
  return found if len(found) == 2 else {}


def walk_files(folder: str) -> Iterator[Tuple[str, Optional[str]]]:
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
        yield path, HIDDEN_FOLDER
  while errors:
    error = errors.pop(0)
    yield error.filename, f'unreadable folder: {error.strerror}'


def _list_local(root: str) -> Listing:
  if not os.path.isdir(root):
    raise ListingError(f'Data folder {root} does not exist or is not a folder.')
  try:
    presplit = _local_presplit(root)
    layout = [(s, os.path.join(root, d)) for s, d in presplit.items()] or [(None, root)]
    class_names = _class_names([c for _, folder in layout for c in _visible_dirs(folder)])
    candidates = []

    def add(path: str, class_name: str, split: Optional[str], problem: Optional[str] = None):
      relpath = os.path.relpath(path, root).replace(os.sep, '/')
      candidates.append(Candidate(path, relpath, class_name, split, problem))

    if presplit:  # files directly in the root belong to no class
      for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir(follow_symlinks=False):
          add(entry.path, ROOT_CLASS, None)
    for split, folder in layout:
      for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        is_dir = entry.is_dir(follow_symlinks=False)
        if is_dir and not entry.name.startswith('.'):
          for path, problem in walk_files(entry.path):
            add(path, display(entry.name), split, problem)
        elif is_dir:
          add(entry.path, ROOT_CLASS, split, HIDDEN_FOLDER)
        else:  # a file directly in the root (or in train/, validation/): no class
          add(entry.path, ROOT_CLASS, split)
    used = set(presplit.values())
    unread = [display(d) for d in _visible_dirs(root) if d not in used] if presplit else []
  except OSError as e:
    raise ListingError(f'Cannot list data folder {e.filename}: {e.strerror}.') from e
  return Listing(root, class_names, candidates, presplit, unread)


def local_fingerprint(root: str) -> str:
  """Names, sizes, mtimes, modes and ctimes of everything below a local folder (so that
  fixing a file's permissions also counts as a change)."""
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


# Object stores and other Beam filesystems ----------------------------------------------

def _remote_objects(root: str) -> List[Tuple[str, int, float]]:
  """(relpath, size, mtime) of every object below `root`, sorted by relpath."""
  prefix = root.rstrip('/') + '/'
  try:
    (result,) = FileSystems.match([prefix + '**'])
  except Exception as e:  # pylint: disable=broad-except  # each filesystem raises its own
    raise ListingError(f'Cannot list data folder {root}: {e}') from e
  objects = []
  for meta in result.metadata_list:
    relpath = meta.path[len(prefix):] if meta.path.startswith(prefix) else meta.path
    if relpath and not relpath.endswith('/'):  # 'folder/' markers hold no image
      objects.append((relpath, meta.size_in_bytes, meta.last_updated_in_seconds))
  return sorted(objects)


def _hidden_folder_at(parts: List[str]) -> Optional[int]:
  """Index of the first hidden folder among an object's folder names, or None."""
  return next((i for i, p in enumerate(parts[:-1]) if p.startswith('.')), None)


def _list_remote(root: str, objects: List[Tuple[str, int, float]]) -> Listing:
  if not objects:
    raise ListingError(f'Data folder {root} does not exist or holds no files.')
  tops = {rel.split('/')[0] for rel, _, _ in objects if '/' in rel}
  presplit = {}
  for split, names in PRESPLIT_DIRS.items():
    name = next((n for n in names if n in tops), None)
    if name:
      presplit[split] = name
  presplit = presplit if len(presplit) == 2 else {}
  split_of = {d: s for s, d in presplit.items()}
  raw_classes, candidates, hidden = [], [], set()
  for relpath, _, _ in objects:
    parts = relpath.split('/')
    split = split_of.get(parts[0]) if presplit else None
    if presplit and split is None and len(parts) > 1:
      continue  # a top-level folder the pre-split layout does not read
    inner = parts[1:] if split else parts
    hidden_at = _hidden_folder_at(inner)
    if hidden_at is not None:  # one entry per hidden folder, as on a local disk
      folder = '/'.join(([parts[0]] if split else []) + inner[:hidden_at + 1])
      if folder not in hidden:
        hidden.add(folder)
        class_name = display(inner[0]) if hidden_at > 0 else ROOT_CLASS
        candidates.append(Candidate(join(root, folder), folder, class_name, split, HIDDEN_FOLDER))
      continue
    if len(inner) > 1:
      raw_classes.append(inner[0])
    class_name = display(inner[0]) if len(inner) > 1 else ROOT_CLASS
    candidates.append(Candidate(join(root, relpath), relpath, class_name, split))
  unread = sorted(display(t) for t in tops - set(presplit.values()) - {'.'}
                  if not t.startswith('.')) if presplit else []
  return Listing(root, _class_names(raw_classes), candidates, presplit, unread)


# root -> (fingerprint, objects) of its last listing by `remote_fingerprint`: ExampleGen's
# executor gets the driver's fingerprint and reuses the listing it was computed from.
_LISTED: Dict[str, Tuple[str, List[Tuple[str, int, float]]]] = {}


def _digest(objects: List[Tuple[str, int, float]]) -> str:
  digest = hashlib.sha256()
  for relpath, size, mtime in objects:
    digest.update(f'{relpath}:{size}:{mtime};'.encode('utf-8', 'surrogateescape'))
  return digest.hexdigest()[:16]


def remote_fingerprint(root: str) -> str:
  """Names, sizes and modification times of every object below a URI."""
  objects = _remote_objects(root)
  _LISTED[root] = (_digest(objects), objects)
  return _LISTED[root][0]


def _remote_listing(root: str, fingerprint: Optional[str]) -> List[Tuple[str, int, float]]:
  """The objects below `root`: those `remote_fingerprint` listed when they gave
  `fingerprint` (one listing per run), else listed now."""
  fingerprinted, objects = _LISTED.pop(root, (None, None))
  if objects is not None and fingerprint and fingerprinted == fingerprint:
    return objects
  return _remote_objects(root)


def _remote_tfrecord_files(root: str, objects: List[Tuple[str, int, float]]) -> Listing:
  """`tfrecord_files` from a listing, without a listing call per pattern and folder."""
  def files(folder: str) -> Dict[str, int]:
    prefix = folder + '/' if folder else ''
    return {join(root, rel): size for rel, size, _ in objects
            if rel.startswith(prefix) and '/' not in rel[len(prefix):]
            and any(fnmatch.fnmatchcase(rel[len(prefix):], p) for p in TFRECORD_PATTERNS)}

  return _tfrecord_layout(root, files)


# Either -------------------------------------------------------------------------------

def _tfrecord_layout(root: str, files: Callable[[str], Dict[str, int]]) -> Listing:
  """A listing of TFRecord files: those directly in `root`, else those in the split
  folders of an image folder (train/ and validation/, eval/ or val/; both needed); no
  files when the folder holds images. `files(folder)`: path -> bytes of the TFRecord
  files in `folder` ('' for the root)."""
  found = {'': files('')}
  if not found['']:
    found = {split: next(filter(None, map(files, names)), {})
             for split, names in PRESPLIT_DIRS.items()}
    if not all(found.values()):
      found = {}
  return Listing(root, [], [], {}, [], tfrecord_files={s: sorted(f) for s, f in found.items()},
                 file_bytes={path: size for f in found.values() for path, size in f.items()})


def _match(pattern: str) -> Dict[str, int]:
  try:
    return {m.path: m.size_in_bytes for m in FileSystems.match([pattern])[0].metadata_list}
  except Exception:  # pylint: disable=broad-except  # no match raises on some filesystems
    return {}


def _local_tfrecords(root: str) -> Listing:
  def files(folder: str) -> Dict[str, int]:
    return {path: size for p in TFRECORD_PATTERNS
            for path, size in _match(join(join(root, folder) if folder else root, p)).items()}
  return _tfrecord_layout(root, files)


def list_folder(root: str, fingerprint: Optional[str] = None) -> Listing:
  """Lists a data folder (local path or URI) as ExampleGen reads it. A URI is listed
  once, layout and files together; with the `fingerprint` that `fingerprint(root)` gave
  in this process, not at all (the listing it was computed from)."""
  if is_local(root):
    records = _local_tfrecords(root)
    return records if records.tfrecord_files else _list_local(root)
  objects = _remote_listing(root, fingerprint)
  records = _remote_tfrecord_files(root, objects)
  return records if records.tfrecord_files else _list_remote(root, objects)


def list_files(root: str, fingerprint: Optional[str] = None) -> List[Candidate]:
  """Every file below `root` (a local folder or a URI), at any depth, with no class or
  split: a folder of unlabeled images. Hidden, symlinked and unreadable folders are
  listed as one entry each, as `walk_files` lists them; nothing is read. A URI with the
  `fingerprint` that `fingerprint(root)` gave in this process is not listed again."""
  if is_local(root):
    if not os.path.isdir(root):
      raise ListingError(f'Data folder {root} does not exist or is not a folder.')
    return [Candidate(path, os.path.relpath(path, root).replace(os.sep, '/'), '', None, problem)
            for path, problem in walk_files(root)]
  candidates, hidden = [], set()
  for relpath, _, _ in _remote_listing(root, fingerprint):
    parts = relpath.split('/')
    hidden_at = _hidden_folder_at(parts)
    if hidden_at is None:
      candidates.append(Candidate(join(root, relpath), relpath, '', None))
      continue
    folder = '/'.join(parts[:hidden_at + 1])
    if folder not in hidden:  # one entry per hidden folder, as on a local disk
      hidden.add(folder)
      candidates.append(Candidate(join(root, folder), folder, '', None, HIDDEN_FOLDER))
  if not candidates:
    raise ListingError(f'Data folder {root} does not exist or holds no files.')
  return candidates


def fingerprint(root: str) -> str:
  """A cheap digest of everything under the data folder, for the pipeline cache."""
  return local_fingerprint(root) if is_local(root) else remote_fingerprint(root)
