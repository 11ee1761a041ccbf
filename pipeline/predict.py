"""Predictions from a pushed SavedModel through its image-bytes signature."""

from typing import Dict, Iterator, Sequence

import tensorflow as tf

from pipeline.model_dir import resolve_model_dir  # pylint: disable=unused-import (public here)
from trainer.export import IMAGE_BYTES_SIGNATURE


def load_signature(model_dir: str, name: str = IMAGE_BYTES_SIGNATURE):
  return tf.saved_model.load(model_dir).signatures[name]


def predict_bytes(signature, images: Sequence[bytes]) -> Dict[str, tf.Tensor]:
  """Calls the image-bytes signature on encoded images (as TF Serving would)."""
  return signature(image_bytes=tf.constant(list(images), dtype=tf.string))


def predict_files(model_dir: str, paths: Sequence[str]) -> Iterator[Dict]:
  """Yields {'path', 'class_name', 'probabilities'} or {'path', 'error'} per file."""
  signature = load_signature(model_dir)
  for path in paths:
    try:
      with open(path, 'rb') as f:
        outputs = predict_bytes(signature, [f.read()])
    except (OSError, tf.errors.InvalidArgumentError) as e:
      message = e.strerror if isinstance(e, OSError) else 'not a decodable image'
      yield {'path': path, 'error': message}
      continue
    yield {'path': path, 'class_name': outputs['class_name'].numpy()[0].decode(),
           'probabilities': outputs['probabilities'].numpy()[0].tolist()}


def format_row(row: Dict) -> str:
  if 'error' in row:
    return f'{row["path"]}: error: {row["error"]}'
  probabilities = ', '.join(f'{p:.4f}' for p in row['probabilities'])
  return f'{row["path"]}: {row["class_name"]} [{probabilities}]'
