"""Batch prediction over files and folders: `transfer-pipeline predict`.

Files are read with ingestion's safe reader (`components.example_gen.image_walk`), classified in
batches and written row by row (`components.inference.prediction_table`) as they come, so
memory stays flat however many images there are. Models: a SavedModel version folder
(its `serving_image_bytes` signature, as TF Serving runs it) or a `.tflite` file.
"""

import collections
import contextlib
import dataclasses
import os
import sys
import time
from typing import Counter, Iterable, Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf

import console
from components.inference import prediction_table, uncertainty
from components.example_gen.image_walk import ImageFile, count_files, walk_images
from tools import predict
from pipeline.configs import ConfigError, DataConfig
from tools.model_dir import resolve_model_dir
from trainer import export

DEFAULT_BATCH_SIZE = 32


class SavedModelClassifier:
  """Encoded images -> probabilities [B, classes] through `serving_image_bytes`."""

  def __init__(self, model_dir: str):
    self.source = model_dir
    self._signature = predict.load_signature(model_dir)
    num_classes = int(self._signature.structured_outputs['probabilities'].shape[-1])
    self.class_names = export.fallback_class_names(
        num_classes, export.read_class_names(model_dir))

  def __call__(self, images: Sequence[bytes]) -> np.ndarray:
    return predict.predict_bytes(self._signature, images)['probabilities'].numpy()


def load_classifier(path: str):
  """A `.tflite` file -> TFLite interpreter; a model or version folder -> SavedModel."""
  if path.endswith('.tflite'):
    from trainer import tflite_export  # pylint: disable=g-import-not-at-top
    return tflite_export.TFLiteClassifier(path)
  return SavedModelClassifier(resolve_model_dir(path))


@dataclasses.dataclass
class Summary:
  """What a prediction run did: counts per predicted class and per skip reason."""
  predicted: Counter[str] = dataclasses.field(default_factory=collections.Counter)
  skipped: Counter[str] = dataclasses.field(default_factory=collections.Counter)
  seconds: float = 0.0

  @property
  def images(self) -> int:
    return sum(self.predicted.values())

  def lines(self) -> List[str]:
    rate = self.images / self.seconds if self.seconds else 0.0
    lines = [f'Classified {self.images} images in {self.seconds:.1f} s ({rate:.1f} images/s); '
             f'skipped {sum(self.skipped.values())} files.']
    lines += [f'  {name}: {count}' for name, count in sorted(self.predicted.items())]
    lines += [f'  skipped, {reason}: {count}' for reason, count in self.skipped.most_common()]
    return lines


def _batches(files: Iterable[ImageFile], batch_size: int) -> Iterator[List[ImageFile]]:
  """Runs of files in input order holding `batch_size` readable images each (the last
  may hold fewer); skipped files ride along in their place, so rows keep input order."""
  batch, readable = [], 0
  for item in files:
    batch.append(item)
    readable += item.image is not None
    if readable == batch_size:
      yield batch
      batch, readable = [], 0
  if batch:
    yield batch


def _classify(classifier, images: List[bytes]) -> List[Optional[np.ndarray]]:
  """Probabilities per image; if the batch fails to decode, image by image (None: undecodable)."""
  if not images:
    return []
  try:
    return list(classifier(images))
  except tf.errors.InvalidArgumentError:
    if len(images) == 1:
      return [None]
    return [row for image in images for row in _classify(classifier, [image])]


def predict_files(classifier, inputs: Iterable[str], writer: prediction_table.PredictionWriter,
                  batch_size: int = DEFAULT_BATCH_SIZE,
                  max_pixels: int = DataConfig.max_image_pixels,
                  progress=None) -> Summary:
  """Classifies every image below `inputs`, writing one row per file to `writer`, in
  input order, batch by batch."""
  summary = Summary()
  start = time.perf_counter()
  for batch in _batches(walk_images(inputs, max_pixels), batch_size):
    rows = iter(_classify(classifier, [item.image for item in batch if item.image is not None]))
    for item in batch:
      row = next(rows) if item.image is not None else None
      if row is not None:
        summary.predicted[writer.predicted(item.path, row)] += 1
      else:
        reason = item.reason or 'not a decodable image'
        writer.skipped(item.path, reason)
        summary.skipped[reason] += 1
    writer.flush()
    if progress:
      progress.update(len(batch))
  summary.seconds = time.perf_counter() - start
  return summary


def _open_output(output: Optional[str]):
  """The output file (its format from the name), or stdout as CSV."""
  if not output:
    return contextlib.nullcontext(sys.stdout), '.csv'
  try:
    fmt = prediction_table.format_of(output)
  except ValueError as e:
    raise ConfigError(f'--output: {e}') from e
  parent = os.path.dirname(os.path.abspath(output))
  if not os.path.isdir(parent):
    raise ConfigError(f'--output: folder {parent} does not exist.')
  return open(output, 'w', newline='', encoding='utf-8'), fmt


def command(model: str, inputs: Sequence[str], output: Optional[str],
            batch_size: int = DEFAULT_BATCH_SIZE, max_pixels: Optional[int] = None,
            rank_uncertain: Optional[str] = None, method: str = 'margin') -> int:
  """`transfer-pipeline predict`: rows to `output` (or stdout), progress and summary to stderr."""
  max_pixels = max_pixels or DataConfig.max_image_pixels
  if batch_size < 1:
    raise ConfigError('--batch-size: expected an integer >= 1.')
  try:
    classifier = load_classifier(model)
  except (FileNotFoundError, ValueError) as e:
    raise ConfigError(f'--model: {e}') from e
  print(f'Model: {classifier.source} '
        f'(classes: {", ".join(classifier.class_names)})', file=sys.stderr)
  try:
    ranking = uncertainty.check_ranking_output(rank_uncertain, method)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  target, fmt = _open_output(output)
  bar = console.Progress(total=count_files(inputs) if sys.stderr.isatty() else None,
                         label='predict', unit='images', stream=sys.stderr)
  with target as out:
    writer = prediction_table.PredictionWriter(out, classifier.class_names, fmt)
    if ranking:
      writer = uncertainty.RecordingWriter(writer)
    summary = predict_files(classifier, inputs, writer, batch_size, max_pixels, progress=bar)
  bar.close()
  if ranking:
    uncertainty.write_ranking_file(ranking, writer.rows, classifier.class_names, method)
    print(f'Most uncertain first ({method}): {ranking}', file=sys.stderr)
  print('\n'.join(summary.lines()), file=sys.stderr)
  if output:
    print(f'Predictions: {output}', file=sys.stderr)
  return 0
