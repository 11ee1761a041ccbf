"""Batch prediction throughput: `transfer-pipeline predict` (files -> safe reader ->
batched serving_image_bytes -> CSV rows) vs the bare Keras model on decoded tensors."""

import os
import time
from typing import Dict, List, Tuple

import tensorflow as tf
import tf_keras as keras

from bench.data import image_files
from components.inference import prediction_table
from tools import batch_predict
from trainer.preprocessing import decode_and_resize


def _paths(folder: str) -> List[str]:
  return sorted(os.path.join(folder, rel) for files in image_files(folder).values()
                for rel in files)


def _decoded_batches(paths: List[str], image_size: int, batch_size: int) -> List[tf.Tensor]:
  batches = []
  for start in range(0, len(paths), batch_size):
    encoded = tf.stack([tf.io.read_file(p) for p in paths[start:start + batch_size]])
    batches.append(tf.cast(decode_and_resize(encoded, image_size), tf.float32))
  return batches


def _bare_seconds(model_dir: str, batches: List[tf.Tensor]) -> float:
  model = keras.models.load_model(model_dir, compile=False)
  bare = tf.function(lambda x: model(x, training=False))
  bare(batches[0])  # warm-up (tracing)
  start = time.perf_counter()
  for batch in batches:
    bare(batch).numpy()
  return time.perf_counter() - start


def _predict_seconds(model_dir: str, folder: str, warm_up: List[str],
                     batch_size: int) -> Tuple[float, int]:
  classifier = batch_predict.SavedModelClassifier(model_dir)
  classifier([open(p, 'rb').read() for p in warm_up])  # warm-up (tracing)
  with open(os.devnull, 'w') as out:
    summary = batch_predict.predict_files(
        classifier, [folder], prediction_table.PredictionWriter(out, classifier.class_names),
        batch_size=batch_size)
  return summary.seconds, summary.images


def measure_predict(model_dir: str, folder: str, image_size: int,
                    batch_size: int = 32) -> Dict[str, float]:
  """images/s of predict over every image of `folder`, and of the bare model on the same
  images decoded and resized beforehand (each after a warm-up batch)."""
  paths = _paths(folder)
  bare_seconds = _bare_seconds(model_dir, _decoded_batches(paths, image_size, batch_size))
  predict_seconds, images = _predict_seconds(model_dir, folder, paths[:batch_size], batch_size)
  return {'images': images, 'batch_size': batch_size,
          'predict_images_per_second': images / predict_seconds,
          'bare_images_per_second': len(paths) / bare_seconds}
