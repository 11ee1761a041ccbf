"""TFLite export of the trained model, for devices.

TFLite cannot parse tf.Examples or decode JPEG without SELECT_TF_OPS, so TFX's
`TFLiteRewriter` (which converts the Example-parsing `serving_default`) does not fit:
the converter gets a concrete function that takes pixels at the model's input size
(float32 0..255; uint8 for full-integer quantization) and returns `probabilities`.

  float32        no quantization
  dynamic_range  int8 weights, float activations
  int8           int8 weights and activations, uint8 pixels in; calibrated on a
                 representative dataset drawn from the train split

`write_tflite` writes `model.tflite` beside the SavedModel (TF Serving ignores it) and
`assets.extra/tflite.json`: size, quantization, and top-1 agreement with the Keras
model (the one the SavedModel serves) on the eval split.
"""

import json
import os
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from contract.settings import TFLITE_QUANTIZATIONS
from trainer import artifact_io, export
from trainer.preprocessing import decode_and_resize

TFLITE_FILE = 'model.tflite'
CHECK_FILE = os.path.join('assets.extra', 'tflite.json')
QUANTIZATIONS = TFLITE_QUANTIZATIONS


def probabilities_function(model: keras.Model, num_classes: int, image_size: int):
  """float pixels [B, size, size, 3] (0..255) -> probabilities [B, num_classes]."""

  @tf.function(input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.float32,
                                              name='pixels')])
  def probabilities(pixels):
    output = model(pixels, training=False)
    return tf.concat([1.0 - output, output], axis=1) if num_classes == 2 else output

  return probabilities.get_concrete_function()


def convert(model: keras.Model, num_classes: int, image_size: int, quantization: str,
            representative: Optional[Iterable[np.ndarray]] = None) -> bytes:
  """The TFLite flatbuffer; `representative` (float pixel batches) is needed for int8."""
  if quantization not in QUANTIZATIONS:
    raise ValueError(f'TFLite quantization {quantization!r}: expected one of {QUANTIZATIONS}.')
  function = probabilities_function(model, num_classes, image_size)
  converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
  if quantization != 'float32':
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantization == 'int8':
    if representative is None:
      raise ValueError('int8 quantization needs representative images.')
    samples = [np.asarray(batch, np.float32) for batch in representative]
    converter.representative_dataset = lambda: ([image[None]] for b in samples for image in b)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
  return converter.convert()


class TFLiteClassifier:
  """Encoded images -> probabilities with the TFLite interpreter (as `predict` needs)."""

  def __init__(self, path: str, num_threads: Optional[int] = None):
    """`path`: a local file or any URI TensorFlow reads (gs://...)."""
    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
      raise FileNotFoundError(f'No TFLite model at {path}.')
    self.source = path
    self.interpreter = tf.lite.Interpreter(model_content=artifact_io.read_bytes(path),
                                           num_threads=num_threads)
    self._input = self.interpreter.get_input_details()[0]
    self._output = self.interpreter.get_output_details()[0]
    self.image_size = int(self._input['shape'][1])
    num_classes = int(self._output['shape'][-1])
    self.class_names = export.fallback_class_names(
        num_classes, export.read_class_names(
            os.path.dirname(path if artifact_io.is_uri(path) else os.path.abspath(path))))

  def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
    """uint8 or float pixels [B, size, size, 3] (0..255) -> probabilities [B, classes]."""
    pixels = np.asarray(pixels)
    self.interpreter.resize_tensor_input(self._input['index'], list(pixels.shape))
    self.interpreter.allocate_tensors()
    self.interpreter.set_tensor(self._input['index'], _quantize(pixels, self._input))
    self.interpreter.invoke()
    return _dequantize(self.interpreter.get_tensor(self._output['index']), self._output)

  def __call__(self, images: Sequence[bytes]) -> np.ndarray:
    encoded = tf.constant(list(images), dtype=tf.string)
    return self.predict_pixels(decode_and_resize(encoded, self.image_size).numpy())


def _quantize(values: np.ndarray, detail: Dict) -> np.ndarray:
  dtype = detail['dtype']
  if dtype == np.float32:
    return values.astype(np.float32)
  scale, zero_point = detail['quantization']
  limits = np.iinfo(dtype)
  return np.clip(np.round(values / scale + zero_point), limits.min, limits.max).astype(dtype)


def _dequantize(values: np.ndarray, detail: Dict) -> np.ndarray:
  if detail['dtype'] == np.float32:
    return values
  scale, zero_point = detail['quantization']
  return (values.astype(np.float32) - zero_point) * scale


def agreement(reference: np.ndarray, candidate: np.ndarray) -> Dict[str, float]:
  """Top-1 agreement and probability differences between two [N, classes] arrays."""
  difference = np.abs(reference - candidate)
  return {'top1_agreement': float(np.mean(reference.argmax(1) == candidate.argmax(1))),
          'max_abs_probability_difference': float(difference.max()) if difference.size else 0.0,
          'mean_abs_probability_difference': float(difference.mean()) if difference.size else 0.0,
          'examples': int(len(reference))}


def compare_on(model: keras.Model, classifier: TFLiteClassifier, num_classes: int,
               image_size: int, pixel_batches: Iterable[np.ndarray]) -> Dict[str, float]:
  """Agreement of the TFLite model with the Keras model on float pixel batches."""
  function = probabilities_function(model, num_classes, image_size)
  reference, candidate = [], []
  for pixels in pixel_batches:
    reference.append(function(tf.constant(pixels, tf.float32)).numpy())
    candidate.append(classifier.predict_pixels(pixels))
  if not reference:
    return agreement(np.zeros((0, num_classes)), np.zeros((0, num_classes)))
  return agreement(np.concatenate(reference), np.concatenate(candidate))


def write_tflite(model: keras.Model, class_names: List[str], image_size: int,
                 quantization: str, train_pixels: Iterable[np.ndarray],
                 eval_pixels: Iterable[np.ndarray], export_dir: str,
                 representative_images: int = 100) -> Dict:
  """Writes `model.tflite` and `assets.extra/tflite.json` into `export_dir`; returns the check."""
  num_classes = len(class_names)
  representative = (_take_images(train_pixels, representative_images)
                    if quantization == 'int8' else None)
  flatbuffer = convert(model, num_classes, image_size, quantization, representative)
  path = os.path.join(export_dir, TFLITE_FILE)
  artifact_io.write_bytes(path, flatbuffer)
  check = {'file': TFLITE_FILE, 'bytes': len(flatbuffer), 'quantization': quantization,
           'representative_images': sum(map(len, representative or [])),
           'eval_split': compare_on(model, TFLiteClassifier(path), num_classes, image_size,
                                    eval_pixels)}
  tf.io.gfile.makedirs(os.path.join(export_dir, os.path.dirname(CHECK_FILE)))
  with tf.io.gfile.GFile(os.path.join(export_dir, CHECK_FILE), 'w') as f:
    json.dump(check, f, indent=2)
  return check


def read_check(model_dir: str) -> Optional[Dict]:
  """The tflite.json written beside a model, if any."""
  path = os.path.join(model_dir, CHECK_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def describe(check: Dict) -> str:
  """Quantization, size and agreement on the eval split, in one line."""
  split = check['eval_split']
  return (f'{check["quantization"]}, {check["bytes"] / 2**20:.2f} MiB; top-1 agreement with the SavedModel {split["top1_agreement"]:.4f} on '
          f'{split["examples"]} eval images, max probability difference '
          f'{split["max_abs_probability_difference"]:.2g}')


def _take_images(batches: Iterable[np.ndarray], count: int) -> List[np.ndarray]:
  """Up to `count` images, as a list of batches."""
  taken, total = [], 0
  for batch in batches:
    if total >= count:
      break
    batch = np.asarray(batch)[:count - total]
    taken.append(batch)
    total += len(batch)
  return taken
