"""Batch prediction over files and folders: `transfer-pipeline predict`.

Files are read with ingestion's safe reader (`components.example_gen.image_walk`), classified in
batches and written row by row (`components.inference.prediction_table`) as they come, so
memory stays flat however many images there are. Models: a SavedModel version folder
(its `serving_image_bytes` signature, as TF Serving runs it) or a `.tflite` file.
"""

import collections
import contextlib
import dataclasses
import sys
import time
from typing import Callable, Counter, Iterable, Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf

import console
from components.inference import prediction_table
from components.example_gen.image_walk import ImageFile, count_files, walk_images
from tools import predict, predict_checks
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
    self.image_size = export.read_image_size(model_dir)

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

  @property
  def files_skipped(self) -> int:
    return sum(self.skipped.values())

  def lines(self) -> List[str]:
    """One summary line (classified and skipped counted apart), then the counts per class
    and per skip reason."""
    rate = self.images / self.seconds if self.seconds else 0.0
    lines = [f'Classified {_plural(self.images, "image")}, skipped '
             f'{_plural(self.files_skipped, "file")} in {self.seconds:.1f} s '
             f'({rate:.1f} images/s).']
    lines += [f'  {name}: {count}' for name, count in sorted(self.predicted.items())]
    lines += [f'  skipped, {reason}: {count}' for reason, count in self.skipped.most_common()]
    return lines


def _plural(count: int, noun: str) -> str:
  return f'{count} {noun}{"" if count == 1 else "s"}'


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
  input order, batch by batch. Images are prepared as ingestion stores them (upright,
  downscaled to `data.max_side_multiple` times the model's input size)."""
  summary = Summary()
  start = time.perf_counter()
  image_size = getattr(classifier, 'image_size', None)
  max_side = DataConfig.max_side_multiple * image_size if image_size else 0
  for batch in _batches(walk_images(inputs, max_pixels, max_side), batch_size):
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
  fmt = predict_checks.output_format(output)
  if not output:
    return contextlib.nullcontext(sys.stdout), fmt
  return open(output, 'w', newline='', encoding='utf-8'), fmt


def command(model: str, inputs: Sequence[str], output: Optional[str],
            batch_size: int = DEFAULT_BATCH_SIZE, max_pixels: Optional[int] = None,
            connect: Optional[Callable[[], object]] = None) -> int:
  """`transfer-pipeline predict`: rows to `output` (or stdout), progress and summary to
  stderr. `connect` returns another classifier than `model`'s (`tools.serving_client`).
  Raises NothingToClassify (after the summary) when no file could be classified."""
  max_pixels = max_pixels or DataConfig.max_image_pixels
  predict_checks.check_batch_size(batch_size)
  predict_checks.check_inputs(inputs)
  predict_checks.output_format(output)
  try:
    classifier = connect() if connect else load_classifier(model)
  except (FileNotFoundError, ValueError) as e:
    raise ConfigError(f'--model: {e}') from e
  print(f'Model: {classifier.source} '
        f'(classes: {", ".join(classifier.class_names)})', file=sys.stderr)
  target, fmt = _open_output(output)
  bar = console.Progress(total=count_files(inputs) if sys.stderr.isatty() else None,
                         label='predict', unit='files', stream=sys.stderr)
  with target as out:
    writer = prediction_table.PredictionWriter(out, classifier.class_names, fmt)
    summary = predict_files(classifier, inputs, writer, batch_size, max_pixels, progress=bar)
  bar.close(summary=False)  # the summary below says it once
  print('\n'.join(summary.lines()), file=sys.stderr)
  if not summary.images:
    reasons = ', '.join(f'{reason}: {n}' for reason, n in summary.skipped.most_common())
    raise predict_checks.NothingToClassify(
        f'No image could be classified ({_plural(summary.files_skipped, "file")} skipped'
        + (f'; {reasons}' if reasons else '') + ').')
  if output:
    print(f'Predictions: {output}', file=sys.stderr)
  return 0
