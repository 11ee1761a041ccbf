"""Span folders: `data.path` with `{SPAN}`, `{SPAN:4}`, `{VERSION}` or `{YYYY}{MM}{DD}`.

The specs mean what they mean in TFX (`tfx/components/example_gen/utils.py`): the newest
span is the highest `{SPAN}` number (or the latest date, counted in days since
1970-01-01), and within it the highest `{VERSION}`. TFX's own functions resolve them:

    data.path = /data/photos/week-{SPAN:3}
    -> input_base /data/photos, split pattern 'week-{SPAN:3}/*'
    -> newest span 7: the span folder /data/photos/week-007 (any of today's layouts)

The split pattern ends in '/*' so that TFX's glob sees a span folder whatever it holds
(class folders, train/ + validation/, TFRecord files).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import posixpath
import re
from typing import List, Optional, Tuple

from tfx.components.example_gen import utils
from tfx.proto import example_gen_pb2, range_config_pb2

from components.example_gen import image_listing
from components.example_gen.image_listing import Listing
from components.example_gen.ingest_summary import IngestError

SPLIT_NAME = 'single_split'
# Without specs: TFX's Kubeflow driver fingerprints the files of class folders.
UNSPANNED_PATTERN = '*/*'
_SPEC = re.compile(r'{(SPAN|VERSION)(:[^}]*)?}|{YYYY}|{MM}|{DD}')


@dataclasses.dataclass(frozen=True)
class Span:
  number: int
  version: Optional[int]
  folder: str  # the span's data folder (a local path or a URI)


def has_specs(path: str) -> bool:
  return bool(_SPEC.search(path))


def split_path(path: str) -> Tuple[str, str]:
  """`data.path` -> (input_base, split pattern): the base is the folders before the
  first one with a spec; without specs, (path, '*/*')."""
  path = path.rstrip('/') or path
  if not has_specs(path):
    return path, UNSPANNED_PATTERN
  sep = path.rfind('/', 0, _SPEC.search(path).start())
  if sep < 0:
    raise IngestError(f'data.path {path}: a span pattern needs a parent folder '
                      '(e.g. data/span-{SPAN}).')
  base = path[:sep] or '/'
  if base.endswith(':/'):  # gs://{SPAN}: the bucket itself cannot be a span
    raise IngestError(f'data.path {path}: put span folders inside a bucket folder.')
  return base, path[sep + 1:] + '/*'


def input_split(pattern: str) -> example_gen_pb2.Input.Split:
  """The ExampleGen's one input split over `pattern`; bad specs fail in one line."""
  split = example_gen_pb2.Input.Split(name=SPLIT_NAME, pattern=pattern)
  try:
    utils.verify_split_pattern_specs(split)
  except ValueError as e:
    raise IngestError(f'data.path: {e}.') from e
  return split


def folder_of(input_base: str, resolved_pattern: str) -> str:
  """The data folder of a resolved split pattern ('week-007/*' -> <base>/week-007)."""
  if resolved_pattern == UNSPANNED_PATTERN:
    return input_base
  return posixpath.join(input_base, resolved_pattern[:-len('/*')])


def resolve(input_base: str, pattern: str,
            range_config: Optional[range_config_pb2.RangeConfig] = None) -> Span:
  """The newest span (and its newest version) matching `pattern` under `input_base`,
  within `range_config` if given; IngestError naming the pattern when none matches."""
  split = input_split(pattern)
  resolved = [copy.deepcopy(split)]
  try:
    _, number, version = utils.calculate_splits_fingerprint_span_and_version(
        input_base, resolved, range_config)
  except ValueError as e:
    where = (f' (span {range_config.static_range.start_span_number})'
             if range_config and range_config.HasField('static_range') else '')
    # TFX's own reason only when it says more than "no match" (e.g. a span that is no number).
    reason = '' if str(e).startswith('Cannot find matching') else f': {e}'
    raise IngestError(f'No folder matches data.path {posixpath.join(input_base, pattern[:-2])}'
                      f'{where}{reason}.') from e
  return Span(number, version, folder_of(input_base, resolved[0].pattern))


def window(input_base: str, pattern: str, newest: int, num_spans: int) -> List[Span]:
  """The spans of TFX's rolling range ending at span `newest`: span numbers
  newest-num_spans+1 .. newest that exist (missing numbers are skipped), oldest first."""
  spans = []
  for number in range(max(0, newest - num_spans + 1), newest + 1):
    static = range_config_pb2.RangeConfig(static_range=range_config_pb2.StaticRange(
        start_span_number=number, end_span_number=number))
    try:
      spans.append(resolve(input_base, pattern, static))
    except IngestError:
      continue
  return spans


def merged_listing(input_base: str, listings: List[Tuple[Span, Listing]]) -> Listing:
  """One listing of several span folders, rooted at `input_base`: every entry keeps its
  class and split, its relative path gains the span folder ('week-001/cat/1.jpg')."""
  if len(listings) == 1:
    return listings[0][1]
  if len({bool(listing.tfrecord_files) for _, listing in listings}) > 1:
    raise IngestError('The spans of the window mix image folders and TFRecord files: '
                      'use one layout for every span.')
  candidates, unread, split_folders, records, file_bytes = [], [], {}, {}, {}
  for span, listing in listings:
    prefix = span.folder[len(input_base.rstrip('/')) + 1:]
    candidates += [dataclasses.replace(c, relpath=f'{prefix}/{c.relpath}')
                   for c in listing.candidates]
    unread += [f'{prefix}/{folder}' for folder in listing.unread_folders]
    split_folders.update(listing.split_folders)
    for split, files in listing.tfrecord_files.items():
      records.setdefault(split, []).extend(files)
    file_bytes.update(listing.file_bytes)
  class_names = sorted({c for _, listing in listings for c in listing.class_names})
  return Listing(input_base, class_names, candidates, split_folders, unread, records,
                 file_bytes)


def same_classes(listings: List[Tuple[Span, Listing]]) -> List[Tuple[Span, Listing]]:
  """The newest span and the spans just before it with the same classes (oldest first):
  a class that appears or disappears starts a new window."""
  kept = [listings[-1]]
  for span, listing in reversed(listings[:-1]):
    if listing.class_names != kept[0][1].class_names:
      logging.warning('Span %d is left out of the window: its classes %s are not those of '
                      'span %d %s.', span.number, listing.class_names, kept[-1][0].number,
                      kept[-1][1].class_names)
      break
    kept.insert(0, (span, listing))
  return kept


def describe(spans: List[Span]) -> str:
  """'span 7 (week-007)' or 'spans 5-7 (3 folders)', for logs."""
  if len(spans) == 1:
    return f'span {spans[0].number} ({image_listing.display(spans[0].folder)})'
  return f'spans {spans[0].number}-{spans[-1].number} ({len(spans)} folders)'
