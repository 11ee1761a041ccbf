"""The Beam pipeline that turns a listed data folder into sharded, class-mixed TFRecords.

    listing (file names, in memory) -> shards (a deterministic shuffled order)
      -> ParDo per shard: hash each file's bytes (no decoding)
         -> one SplitPlan: a stratified train/eval split by content (content_split.py)
      -> ParDo per shard: read, check, downscale, write Split-{train,eval}/data_tfrecord-i-of-n.gz
         side outputs: 'written' (split, class), 'found' (class), 'skipped' (quarantine
         record, OS and tool files marked ignored), 'downscaled'
      -> label_vocabulary.txt, quarantine.jsonl, ingest_summary.json

Each file is read twice (once to hash its bytes, once to decode it) and decoded once.

Every shard is one unit of work, so the pipeline spreads over Beam workers and holds
one image at a time per worker: no GroupByKey of images, memory does not grow with the
data. Files are assigned to shards, and ordered inside a shard, by a hash of their
path: shards are class-mixed and byte-identical whichever runner writes them.

`ingest()` runs the whole thing in-process (tests, tools); the ExampleGen executor
(components/example_gen/image_folder_example_gen.py) builds the same graph in its own pipeline.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import math
import os
import struct
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import apache_beam as beam
import google_crc32c
from google.protobuf import message
import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

import console
from components.example_gen import content_split, image_ingest, image_listing
from components.example_gen.content_split import Hashed, SplitPlan
from components.example_gen.image_ingest import Refused
from components.example_gen.ingest_summary import (QUARANTINE_FILE, SUMMARY_FILE, UNKNOWN_LABEL,
                                       VOCABULARY_FILE, IngestError, IngestSummary,
                                       check_trainable, load_summary, warnings_of)
from contract.settings import IngestOptions
from components.example_gen.image_listing import ROOT_CLASS, SPLITS, Candidate, Listing
from contract.features import FILENAME_KEY, IMAGE_KEY, LABEL_KEY

# More shards than configured when the data is large, so that work spreads evenly.
FILES_PER_SHARD = 1000
PROGRESS_EVERY = 500


# Shards -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Shard:
  index: int
  count: int
  items: Tuple[Any, ...]  # Candidates, or TFRecord (split, path, start, end) work items


def _order_key(name: str) -> str:
  return hashlib.sha256(os.fsencode(name)).hexdigest()


def plan_shards(candidates: Sequence[Candidate], num_shards: int) -> List[Shard]:
  """Candidates in a deterministic shuffled (hash) order, dealt round-robin into shards."""
  count = max(num_shards, math.ceil(len(candidates) / FILES_PER_SHARD), 1)
  ordered = sorted(candidates, key=lambda c: _order_key(c.relpath))
  return [Shard(i, count, tuple(ordered[i::count])) for i in range(count)]


class ShardWriter:
  """One gzipped TFRecord file per split for one shard (any filesystem TF can write)."""

  def __init__(self, output_dir: str, shard: Shard, splits: Sequence[str] = SPLITS):
    self._writers = {}
    for split in splits:
      folder = os.path.join(output_dir, f'Split-{split}')
      tf.io.gfile.makedirs(folder)
      name = f'data_tfrecord-{shard.index:05d}-of-{shard.count:05d}.gz'
      self._writers[split] = tf.io.TFRecordWriter(os.path.join(folder, name), 'GZIP')

  def write(self, split: str, example: tf.train.Example) -> None:
    self._writers[split].write(example.SerializeToString(deterministic=True))

  def close(self) -> None:
    for writer in self._writers.values():
      writer.close()


def real_root_of(root: str) -> str:
  """The real path of a local data root (files are opened beneath it); '' for a URI."""
  return os.path.realpath(root) if image_listing.is_local(root) else ''


def _refuse_early(cand: Candidate) -> None:
  """Refusals known without reading: a listing problem, a file outside any class folder."""
  if cand.problem:
    raise Refused(cand.problem)
  if cand.class_name == ROOT_CLASS:  # not read
    image_ingest.refuse_ignored(cand.path)
    raise Refused('not inside a class folder')


def read_candidate(cand: Candidate, real_root: str, options: IngestOptions
                   ) -> image_ingest.StoredImage:
  """A listed file's stored image, or Refused (a problem found while listing comes first)."""
  if cand.problem:
    raise Refused(cand.problem)
  return image_ingest.read_stored(cand.path, real_root, options.max_image_pixels,
                                  options.max_image_bytes, options.max_image_side,
                                  relpath=cand.relpath)


def _skipped(relpath: str, class_name: str, refusal: Refused) -> beam.pvalue.TaggedOutput:
  record = {'path': image_listing.display(relpath), 'class': class_name,
            'reason': refusal.reason}
  if refusal.detail:
    record['detail'] = refusal.detail
  if refusal.ignored:
    record['ignored'] = True
  return beam.pvalue.TaggedOutput('skipped', record)


class HashImageShard(beam.DoFn):
  """The content hash of every readable file of one shard (bytes only, nothing decoded)."""

  def __init__(self, root: str, options: IngestOptions):
    self._root = root
    self._options = options

  def process(self, shard: Shard) -> Iterator[Hashed]:
    real_root = real_root_of(self._root)
    for cand in shard.items:
      try:
        _refuse_early(cand)
        image_ingest.refuse_ignored(cand.path)
        data = image_ingest.read_bytes(cand.path, real_root, self._options.max_image_bytes,
                                       cand.relpath)
      except Refused:
        continue  # refused again, with its reason, when the shard is written
      yield Hashed(cand.relpath, cand.class_name, cand.split, content_split.content_digest(data))


class WriteImageShard(beam.DoFn):
  """Reads, checks and writes the images of one shard; tags what happened to each."""

  def __init__(self, root: str, output_dir: str, class_names: Sequence[str],
               options: IngestOptions):
    self._root = root
    self._output_dir = output_dir
    self._labels = {name: i for i, name in enumerate(class_names)}
    self._options = options

  def process(self, shard: Shard, plan: SplitPlan) -> Iterator[Any]:
    real_root = real_root_of(self._root)
    writer = ShardWriter(self._output_dir, shard)
    try:
      for n, cand in enumerate(shard.items, 1):
        yield beam.pvalue.TaggedOutput('found', cand.class_name)
        try:
          _refuse_early(cand)
          stored = read_candidate(cand, real_root, self._options)
        except Refused as refusal:
          yield _skipped(cand.relpath, cand.class_name, refusal)
          continue
        split = plan.split_of(cand.relpath, cand.split)
        label = self._labels[cand.class_name]
        writer.write(split, image_ingest.make_example(stored.data, label, cand.class_name,
                                                      cand.relpath))
        yield beam.pvalue.TaggedOutput('written', (split, cand.class_name))
        if stored.downscaled:
          yield beam.pvalue.TaggedOutput('downscaled', cand.class_name)
        if n % PROGRESS_EVERY == 0:
          logging.info('Shard %d/%d: %d/%d files.', shard.index + 1, shard.count, n,
                       len(shard.items))
    finally:
      writer.close()


# TFRecord input -------------------------------------------------------------------------

CORRUPT_RECORDS = '(corrupt TFRecord data)'  # the "class" of quarantined records


def _masked_crc32c(data: bytes) -> int:
  """TFRecord's checksum: crc32c rotated right by 15 bits plus a constant."""
  crc = google_crc32c.value(data)
  return (((crc >> 15) | (crc << 17)) + 0xa282ead8) & 0xffffffff


# Uncompressed TFRecord input files larger than this are read as byte ranges of this
# size, each its own shard (one unit of work for a Beam worker).
TFRECORD_RANGE_BYTES = 256 * 2**20


def _gzipped(path: str) -> bool:
  return path.endswith('.gz')


def tfrecord_ranges(files: Sequence[Tuple[Optional[str], str]], file_bytes: Dict[str, int],
                    range_bytes: Optional[int] = None) -> List[Tuple[Any, ...]]:
  """(split, path, start, end, file bytes) work items: an uncompressed file larger than
  `range_bytes` (default TFRECORD_RANGE_BYTES) in byte ranges, any other file whole (end
  None). `file_bytes`: each file's size, from the listing."""
  range_bytes = range_bytes or TFRECORD_RANGE_BYTES
  items = []
  for split, path in files:
    size = file_bytes[path]
    if _gzipped(path) or size <= range_bytes:
      items.append((split, path, 0, None, size))
      continue
    items.extend((split, path, start, min(start + range_bytes, size), size)
                 for start in range(0, size, range_bytes))
  return items


def _length_at(f: Any, offset: int, file_size: int) -> Optional[int]:
  """The record length at `offset` when a checksum-valid length that fits the file
  starts there, else None."""
  f.seek(offset)
  header = f.read(12)
  if len(header) < 12:
    return None
  (length,) = struct.unpack('<Q', header[:8])
  if (_masked_crc32c(header[:8]) != struct.unpack('<I', header[8:])[0]
      or offset + 16 + length > file_size):
    return None
  return length


def _starts_record(f: Any, offset: int, file_size: int) -> bool:
  """A record starts at `offset`: its length passes its checksum and so does its data or,
  for a record whose data is corrupt, the next record's length (or the file ends there).
  A false match has odds of 2^-64."""
  length = _length_at(f, offset, file_size)
  if length is None:
    return False
  following = offset + 16 + length
  data = f.read(length + 4)
  return (_masked_crc32c(data[:length]) == struct.unpack('<I', data[length:])[0]
          or following == file_size or _length_at(f, following, file_size) is not None)


def first_record_from(f: Any, start: int, file_size: int, chunk: int = 1 << 20) -> int:
  """Offset of the first record that starts at or after `start` (`file_size` if none),
  found by scanning (`_starts_record`)."""
  offset = start
  while offset + 16 <= file_size:
    f.seek(offset)
    window = f.read(chunk + 12)
    for i in range(max(0, len(window) - 11)):
      if (_masked_crc32c(window[i:i + 8]) == struct.unpack('<I', window[i + 8:i + 12])[0]
          and _starts_record(f, offset + i, file_size)):
        return offset + i
    offset += chunk
  return file_size


def read_records(path: str, start: int = 0, end: Optional[int] = None,
                 file_bytes: Optional[int] = None
                 ) -> Iterator[Tuple[int, Union[bytes, Refused]]]:
  """(byte offset, record) of one TFRecord file on any Beam filesystem (.gz: gzipped;
  offsets in the uncompressed stream), each record checked against its masked crc32c.
  A record whose data fails its check comes as a Refused and reading goes on. A length
  that fails its check comes as a Refused and, in an uncompressed file of known size
  (`file_bytes`), reading goes on at the next record found by scanning
  (`first_record_from`); in a gzipped one, or a file cut short, nothing after it can be
  found: one Refused for the rest of the file (of the byte range).

  With `end` (uncompressed files only, of `file_bytes`): the records that start in
  [start, end), the first one found by scanning from `start`; byte ranges that tile a
  file read each of its records exactly once."""
  compression = CompressionTypes.UNCOMPRESSED if end is not None else CompressionTypes.AUTO
  seekable = file_bytes is not None and (end is not None or not _gzipped(path))
  with FileSystems.open(path, compression_type=compression) as f:
    offset = 0
    if end is not None:
      offset = first_record_from(f, start, file_bytes) if start else 0
      f.seek(offset)
    while end is None or offset < end:
      header = f.read(12)  # uint64 length + its masked crc32c
      if not header:
        return
      if len(header) < 12:
        yield offset, Refused('truncated TFRecord file',
                              f'{len(header)} bytes left at byte offset {offset}')
        return
      (length,) = struct.unpack('<Q', header[:8])
      (length_crc,) = struct.unpack('<I', header[8:])
      if _masked_crc32c(header[:8]) != length_crc:
        if not seekable:
          yield offset, Refused('corrupt TFRecord length: rest of the file unread',
                                f'length checksum mismatch at byte offset {offset}')
          return
        following = first_record_from(f, offset + 1, file_bytes)
        yield offset, Refused('corrupt TFRecord length',
                              f'length checksum mismatch at byte offset {offset}; '
                              f'{following - offset:,} bytes skipped to the next record')
        offset = following
        f.seek(offset)
        continue
      data = f.read(length + 4)  # the record + its masked crc32c
      if len(data) < length + 4:
        yield offset, Refused('truncated TFRecord file',
                              f'record of {length} bytes at byte offset {offset} cut short')
        return
      (data_crc,) = struct.unpack('<I', data[length:])
      if _masked_crc32c(data[:length]) != data_crc:
        yield offset, Refused('corrupt TFRecord record',
                              f'data checksum mismatch in the record at byte offset {offset}')
      else:
        yield offset, data[:length]
      offset += 12 + length + 4


def _records_of(shard: Shard, root: str, names: Sequence[str]) -> Iterator[Tuple[Any, ...]]:
  """(split or None, key, label, class name, image values, Refused or None) of every
  record of a shard's TFRecord file (or byte range); the key is the `filename` feature,
  else '<file>@<byte offset>'. A corrupt record: ('<file>@<byte offset>',
  CORRUPT_RECORDS, Refused)."""
  for split, path, start, end, file_bytes in shard.items:
    base = os.path.relpath(path, root) if image_listing.is_local(path) else \
        path[len(root.rstrip('/')) + 1:]
    for offset, record in read_records(path, start, end, file_bytes):
      if isinstance(record, Refused):
        yield split, f'{base}@{offset}', [], CORRUPT_RECORDS, [], record
        continue
      try:
        features = tf.train.Example.FromString(record).features.feature
      except message.DecodeError:
        yield split, f'{base}@{offset}', [], CORRUPT_RECORDS, [], Refused(
            'not a tf.train.Example', f'record at byte offset {offset}')
        continue
      labels = features[LABEL_KEY].int64_list.value if LABEL_KEY in features else []
      label = labels[0] if len(labels) == 1 else -1
      class_name = names[label] if 0 <= label < len(names) else UNKNOWN_LABEL
      key = (features[FILENAME_KEY].bytes_list.value[0].decode('utf-8', 'replace')
             if FILENAME_KEY in features else f'{base}@{offset}')
      images = list(features[IMAGE_KEY].bytes_list.value) if IMAGE_KEY in features else []
      yield split, key, labels, class_name, images, None


class HashRecordShard(beam.DoFn):
  """The content hash of every usable example's image in one shard."""

  def __init__(self, root: str, options: IngestOptions):
    self._root = root
    self._options = options

  def process(self, shard: Shard) -> Iterator[Hashed]:
    for split, key, _, class_name, images, _ in _records_of(shard, self._root,
                                                             self._options.class_names):
      if class_name not in (UNKNOWN_LABEL, CORRUPT_RECORDS) and len(images) == 1:
        yield Hashed(key, class_name, split, content_split.content_digest(images[0]))


class WriteRecordShard(beam.DoFn):
  """Checks and rewrites the examples of TFRecord files: labels against the declared
  class names, images as for a folder; adds `class_name` and `filename`."""

  def __init__(self, root: str, output_dir: str, options: IngestOptions):
    self._root = root
    self._output_dir = output_dir
    self._options = options

  def process(self, shard: Shard, plan: SplitPlan) -> Iterator[Any]:
    names = self._options.class_names
    writer = ShardWriter(self._output_dir, shard)
    try:
      for split, key, labels, class_name, images, corrupt in _records_of(shard, self._root,
                                                                         names):
        yield beam.pvalue.TaggedOutput('found', class_name)
        try:
          if corrupt:
            raise corrupt
          if class_name == UNKNOWN_LABEL:
            raise Refused('label outside data.class_names', f'label {list(labels)}')
          if len(images) != 1:
            raise Refused('no image in the example')
          stored = image_ingest.store_image(images[0], self._options.max_image_pixels,
                                            self._options.max_image_side)
        except Refused as refusal:
          yield _skipped(key, class_name, refusal)
          continue
        to = plan.split_of(key, split)
        writer.write(to, image_ingest.make_example(stored.data, labels[0], class_name, key))
        yield beam.pvalue.TaggedOutput('written', (to, class_name))
        if stored.downscaled:
          yield beam.pvalue.TaggedOutput('downscaled', class_name)
    finally:
      writer.close()


# Reports ------------------------------------------------------------------------------

def _write_reports(_, output_dir: str, class_names: List[str], split_folders: Dict[str, str],
                   written: Iterable[Tuple[Tuple[str, str], int]],
                   found: Iterable[Tuple[str, int]], skipped: Iterable[Dict[str, str]],
                   downscaled: Iterable[Tuple[str, int]], plan: SplitPlan) -> None:
  """Vocabulary (UTF-8), quarantine.jsonl and ingest_summary.json (ASCII JSON)."""
  found = dict(found)
  skipped_files = sorted(skipped, key=lambda r: r['path'])
  per_class = {kind: collections.Counter(r['class'] for r in skipped_files
                                         if r.get('ignored', False) == (kind == 'ignored'))
               for kind in ('skipped', 'ignored')}
  keys = class_names + sorted(k for k in found if k not in class_names)
  counts = dict(written)
  summary = IngestSummary(
      class_names=class_names,
      written={s: {c: counts.get((s, c), 0) for c in class_names} for s in SPLITS},
      skipped={c: per_class['skipped'][c] for c in keys}, found={c: found.get(c, 0) for c in keys},
      skipped_files=skipped_files, split_folders=split_folders,
      ignored={c: per_class['ignored'][c] for c in keys if per_class['ignored'][c]},
      downscaled=sum(n for _, n in downscaled),
      duplicates=[[image_listing.display(k) for k in g] for g in plan.duplicates],
      leaks=[[image_listing.display(k) for k in g] for g in plan.leaks])
  with tf.io.gfile.GFile(os.path.join(output_dir, VOCABULARY_FILE), 'w') as f:
    f.write(''.join(name + '\n' for name in class_names))
  with tf.io.gfile.GFile(os.path.join(output_dir, QUARANTINE_FILE), 'w') as f:
    f.write(''.join(json.dumps(record) + '\n' for record in skipped_files))
  with tf.io.gfile.GFile(os.path.join(output_dir, SUMMARY_FILE), 'w') as f:
    json.dump(summary.to_json(), f, indent=2)


@beam.ptransform_fn
def IngestToTFRecords(pipeline: beam.Pipeline, listing: Listing, output_dir: str,  # pylint: disable=invalid-name
                      options: IngestOptions) -> beam.pvalue.PCollection:
  """Writes the examples, the quarantine and the summary of a listed data folder."""
  if listing.tfrecord_files:
    class_names = list(options.class_names)
    files = [(split or None, path) for split, paths in listing.tfrecord_files.items()
             for path in paths]
    items = tfrecord_ranges(files, listing.file_bytes)
    shards = [Shard(i, len(items), (item,)) for i, item in enumerate(items)]
    hash_shard = HashRecordShard(listing.root, options)
    write = WriteRecordShard(listing.root, output_dir, options)
  else:
    class_names = listing.class_names
    shards = plan_shards(listing.candidates, options.num_shards)
    hash_shard = HashImageShard(listing.root, options)
    write = WriteImageShard(listing.root, output_dir, class_names, options)
  shards = pipeline | 'Shards' >> beam.Create(shards)
  plan = beam.pvalue.AsSingleton(
      shards
      | 'HashContent' >> beam.ParDo(hash_shard)
      | 'AllHashes' >> beam.combiners.ToList()
      | 'PlanSplits' >> beam.Map(content_split.plan_splits, options.eval_percent))
  results = shards | 'ReadCheckWrite' >> beam.ParDo(write, plan).with_outputs(
      'written', 'found', 'skipped', 'downscaled')
  count = beam.combiners.Count.PerElement
  return (pipeline
          | 'Once' >> beam.Create([None])
          | 'WriteReports' >> beam.Map(
              _write_reports, output_dir, class_names, listing.split_folders,
              written=beam.pvalue.AsList(results.written | 'CountWritten' >> count()),
              found=beam.pvalue.AsList(results.found | 'CountFound' >> count()),
              skipped=beam.pvalue.AsList(results.skipped),
              downscaled=beam.pvalue.AsList(results.downscaled | 'CountDownscaled' >> count()),
              plan=plan))


# After the pipeline ---------------------------------------------------------------------

def list_data(root: str, options: IngestOptions, fingerprint: Optional[str] = None) -> Listing:
  """The listing, with listing problems as IngestError (one line); `fingerprint`: see
  `image_listing.list_folder`."""
  try:
    listing = image_listing.list_folder(root, fingerprint)
  except image_listing.ListingError as e:
    raise IngestError(str(e)) from e
  if listing.tfrecord_files and len(options.class_names) < 2:
    raise IngestError('TFRecord input needs data.class_names (at least two, in label order).')
  return listing


def finish(listing: Listing, output_dir: str, options: IngestOptions) -> IngestSummary:
  """Reads back what the pipeline wrote, logs and records warnings, checks it can train."""
  summary = load_summary(output_dir)
  summary.warnings = warnings_of(listing, summary)
  if summary.warnings:
    with tf.io.gfile.GFile(os.path.join(output_dir, SUMMARY_FILE), 'w') as f:
      json.dump(summary.to_json(), f, indent=2)
  bad = [r for r in summary.skipped_files if not r.get('ignored')]
  for record in bad[:20]:
    logging.warning('Skipped %s: %s', record['path'], record['reason'])
  if summary.total_skipped:
    logging.warning('Skipped %d of %d files; full list in %s.', summary.total_skipped,
                    summary.total_found - summary.total_ignored,
                    os.path.join(output_dir, QUARANTINE_FILE))
  if summary.total_ignored:
    logging.info('Ignored %d OS or tool files (sidecars, hidden files); listed in %s.',
                 summary.total_ignored, os.path.join(output_dir, QUARANTINE_FILE))
  for warning in summary.warnings:  # they change what the metrics mean: on the console too
    console.warn(warning)
  check_trainable(summary, options.max_skipped_fraction, bool(listing.tfrecord_files))
  return summary


def local_pipeline(beam_args: Optional[List[str]] = None) -> beam.Pipeline:
  """A pipeline outside TFX (tools, tests): Beam's FnApiRunner unless `beam_args` say
  otherwise."""
  return beam.Pipeline(options=PipelineOptions(beam_args or ['--runner=FnApiRunner']))


def ingest(root: str, output_dir: str, beam_args: Optional[List[str]] = None,
           **options: Any) -> IngestSummary:
  """Lists `root`, runs the ingestion pipeline (Beam's FnApiRunner unless `beam_args`
  say otherwise) and returns the summary; IngestError when it cannot train a model."""
  opts = IngestOptions(**options)
  root = os.path.abspath(root) if image_listing.is_local(root) else root
  with local_pipeline(beam_args) as pipeline:  # sets filesystem options
    listing = list_data(root, opts)
    _ = pipeline | IngestToTFRecords(listing, output_dir, opts)  # pylint: disable=no-value-for-parameter
  return finish(listing, output_dir, opts)
