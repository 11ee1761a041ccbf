"""Serving throughput: the exported `serving_image_bytes` signature vs the bare Keras model."""

import os
import statistics
import time
from typing import Callable, Dict, List

import tensorflow as tf
import tf_keras as keras

from bench.data import image_files
from trainer.export import IMAGE_BYTES_SIGNATURE
from trainer.preprocessing import decode_and_resize


def _time_calls(call: Callable[[], object], min_calls: int, seconds: float) -> Dict[str, float]:
  """Latency of repeated calls after 2 warm-up calls: median, p90 (ms), calls made."""
  for _ in range(2):
    call()
  latencies: List[float] = []
  start = time.perf_counter()
  while len(latencies) < min_calls or time.perf_counter() - start < seconds:
    begin = time.perf_counter()
    call()
    latencies.append(time.perf_counter() - begin)
  latencies.sort()
  return {'median_ms': 1000 * statistics.median(latencies),
          'p90_ms': 1000 * latencies[int(0.9 * (len(latencies) - 1))],
          'mean_s': statistics.fmean(latencies), 'calls': len(latencies)}


def _encoded_images(folder: str, count: int) -> List[bytes]:
  paths = [os.path.join(folder, rel) for files in image_files(folder).values() for rel in files]
  paths = sorted(paths)[:count]
  paths = (paths * count)[:count]  # repeat when the folder has fewer images
  images = []
  for path in paths:
    with open(path, 'rb') as f:
      images.append(f.read())
  return images


def measure(model_dir: str, image_folder: str, image_size: int,
            batch_sizes=(1, 32), seconds: float = 5.0) -> Dict[str, Dict[str, float]]:
  """Per batch size: latency and images/s of the image-bytes signature and the bare model.

  The bare model gets decoded, resized float tensors, prepared outside the timing.
  """
  signature = tf.saved_model.load(model_dir).signatures[IMAGE_BYTES_SIGNATURE]
  model = keras.models.load_model(model_dir, compile=False)
  bare = tf.function(lambda x: model(x, training=False))
  results = {}
  for batch in batch_sizes:
    encoded = tf.constant(_encoded_images(image_folder, batch))
    pixels = tf.cast(decode_and_resize(encoded, image_size), tf.float32)
    for name, call in (('image_bytes', lambda: signature(image_bytes=encoded)),
                       ('bare', lambda: bare(pixels))):
      timing = _time_calls(call, min_calls=5, seconds=seconds)
      timing['images_per_second'] = batch / timing.pop('mean_s')
      results[f'{name}_batch{batch}'] = timing
  return results
