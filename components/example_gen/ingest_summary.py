"""What ingestion found: the summary and reports it writes, and whether the data can
train a model (`check_trainable`, one clear line when not)."""

import dataclasses
import json
import os
from typing import Any, Dict, List

import tensorflow as tf

from components.example_gen.image_listing import PRESPLIT_DIRS, ROOT_CLASS, SPLITS, Listing

VOCABULARY_FILE = 'label_vocabulary.txt'
QUARANTINE_FILE = 'quarantine.jsonl'
SUMMARY_FILE = 'ingest_summary.json'
UNKNOWN_LABEL = '(label outside data.class_names)'


@dataclasses.dataclass
class IngestSummary:
  class_names: List[str]
  written: Dict[str, Dict[str, int]]   # split -> class -> count
  skipped: Dict[str, int]              # class -> count
  found: Dict[str, int]                # class -> count
  skipped_files: List[Dict[str, str]]
  split_folders: Dict[str, str] = dataclasses.field(default_factory=dict)  # pre-split only
  warnings: List[str] = dataclasses.field(default_factory=list)
  # OS and tool files (sidecars, hidden files): listed in the quarantine, never bad.
  ignored: Dict[str, int] = dataclasses.field(default_factory=dict)  # class -> count
  downscaled: int = 0                  # images stored smaller than their file
  duplicates: List[List[str]] = dataclasses.field(default_factory=list)  # identical files
  leaks: List[List[str]] = dataclasses.field(default_factory=list)  # identical, both splits

  @property
  def total_found(self) -> int:
    return sum(self.found.values())

  @property
  def total_skipped(self) -> int:
    """Files that could not be used (bad images), not counting ignored ones."""
    return sum(self.skipped.values())

  @property
  def total_ignored(self) -> int:
    return sum(self.ignored.values())

  def to_json(self) -> Dict[str, Any]:
    return {'class_names': self.class_names, 'written': self.written,
            'skipped': self.skipped, 'found': self.found, 'total_found': self.total_found,
            'total_skipped': self.total_skipped, 'ignored': self.ignored,
            'total_ignored': self.total_ignored, 'downscaled': self.downscaled,
            'duplicates': self.duplicates, 'leaks': self.leaks,
            'split_folders': self.split_folders, 'warnings': self.warnings}


def load_summary(output_dir: str) -> IngestSummary:
  """The summary and quarantine that the pipeline wrote into `output_dir`."""
  with tf.io.gfile.GFile(os.path.join(output_dir, SUMMARY_FILE)) as f:
    report = json.load(f)
  with tf.io.gfile.GFile(os.path.join(output_dir, QUARANTINE_FILE)) as f:
    skipped_files = [json.loads(line) for line in f if line.strip()]
  return IngestSummary(report['class_names'], report['written'], report['skipped'],
                       report['found'], skipped_files, report['split_folders'],
                       report['warnings'], report.get('ignored', {}),
                       report.get('downscaled', 0), report.get('duplicates', []),
                       report.get('leaks', []))


class IngestError(ValueError):
  """What is left after skipping bad files cannot train a model."""


def warnings_of(listing: Listing, summary: IngestSummary) -> List[str]:
  """Problems that do not stop training: unread folders, identical files in both splits
  of a pre-split folder, classes absent from the eval split."""
  leaks = [f'Identical files in {listing.split_folders["train"]}/ and '
           f'{listing.split_folders["eval"]}/: {group} (they inflate eval accuracy: remove one).'
           for group in summary.leaks]
  if listing.unread_folders:
    return leaks + [f'Folders {listing.unread_folders} were not read: a pre-split data folder '
                    f'uses only {sorted(listing.split_folders.values())}.']
  return leaks + [f"Class '{name}' has no eval example ({summary.written['train'][name]} train): "
          'its eval metrics will be missing.'
          for name in summary.class_names
          if summary.written['train'][name] and not summary.written['eval'][name]
          and not listing.split_folders]


def check_trainable(summary: IngestSummary, max_skipped_fraction: float,
                    from_tfrecords: bool = False) -> None:
  """Fails when what is left cannot train a model; the message says what to fix."""
  names = summary.class_names
  if from_tfrecords and summary.found.get(UNKNOWN_LABEL):
    raise IngestError(
        f'{summary.found[UNKNOWN_LABEL]} examples have a label outside data.class_names '
        f'{names} (label ids 0..{len(names) - 1}): declare every class, in label order.')
  if len(names) < 2:
    hint = ''
    if summary.found.get(ROOT_CLASS):
      hint = (f' {summary.found[ROOT_CLASS]} files lie directly in the data folder: put the '
              'images of each class in their own subfolder.')
    if set(names) & {n for group in PRESPLIT_DIRS.values() for n in group}:
      hint += ' A pre-split folder needs both train/ and validation/.'
    raise IngestError(f'Need at least two classes (one subfolder each), found '
                      f'{names or "none"}.{hint}')
  candidates = summary.total_found - summary.total_ignored  # sidecars never count
  if candidates and summary.total_skipped / candidates > max_skipped_fraction:
    raise IngestError(f'{summary.total_skipped} of {candidates} image files could not be '
                      f'used (limit data.max_skipped_fraction={max_skipped_fraction}); '
                      f'reasons in {QUARANTINE_FILE}.')
  empty = [c for c in names if not sum(summary.written[s][c] for s in SPLITS)]
  if empty:
    what = 'Declared classes' if from_tfrecords else 'Class folders'
    skipped = sum(summary.skipped.get(c, 0) for c in empty)
    raise IngestError(
        f'{what} {empty} have no usable images ({skipped} skipped, see {QUARANTINE_FILE}): '
        'add images or remove them (every class is a model output).')
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
  untrained = [c for c in names if not summary.written['train'][c]]
  if untrained:
    raise IngestError(f'Classes {untrained} have no train image (the model cannot learn '
                      'them): add images or lower data.eval_percent.')
