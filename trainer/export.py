"""Serving signatures: raw input in, Transform graph applied, class probabilities out.

  serving_default      serialized tf.Example (`examples`)            -> outputs
  serving_image_bytes  encoded image bytes (`image_bytes`), for TF Serving's
                       REST API: {"instances": [{"b64": "..."}]}      -> outputs
  examples_numeric     serialized tf.Example -> `probabilities`, `class_id` (BulkInferrer)

outputs: `probabilities` float [B, num_classes], `class_id` int64 [B],
`class_name` string [B]. Both serving paths run the same Transform layer.

TF Serving exposes every signature, so each checks the request against the
`ServingConfig` limits (batch size, bytes per image, pixels its header declares) before the
Transform layer decodes anything, and decode one image at a time.
"""

import os
from typing import Dict, List, Optional, Sequence

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from contract.features import EXAMPLES_NUMERIC_SIGNATURE, IMAGE_BYTES_SIGNATURE, IMAGE_KEY
from contract.settings import ServingConfig
from trainer.image_limits import checked_images
from trainer.preprocessing import bytes_to_pixels

# Class names in class-id order, one a line: TF Serving ignores `assets.extra/`.
CLASS_NAMES_FILE = os.path.join('assets.extra', 'class_names.txt')
# The model's square input size, for clients that prepare images as ingestion stores them.
IMAGE_SIZE_FILE = os.path.join('assets.extra', 'image_size.txt')


def _serving_functions(model: keras.Model, tf_transform_output: tft.TFTransformOutput,
                       class_names: List[str], image_size: int,
                       limits: ServingConfig) -> Dict[str, tf.types.experimental.ConcreteFunction]:
  model.tft_layer = tf_transform_output.transform_features_layer()
  names = tf.constant(class_names)
  raw_spec = tf_transform_output.raw_feature_spec()

  def transform(raw_features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    checked = dict(raw_features, **{IMAGE_KEY: checked_images(raw_features[IMAGE_KEY], limits)})
    return model.tft_layer(checked)

  def predict_raw(raw_features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    transformed = transform(raw_features)
    output = model(bytes_to_pixels(transformed[IMAGE_KEY], image_size), training=False)
    if len(class_names) == 2:
      probabilities = tf.concat([1.0 - output, output], axis=1)
    else:
      probabilities = output
    class_id = tf.argmax(probabilities, axis=1)
    return {'probabilities': probabilities, 'class_id': class_id,
            'class_name': tf.gather(names, class_id)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve_examples(serialized):
    return predict_raw(tf.io.parse_example(serialized, {IMAGE_KEY: raw_spec[IMAGE_KEY]}))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='image_bytes')])
  def serve_image_bytes(image_bytes):
    return predict_raw({IMAGE_KEY: tf.reshape(image_bytes, [-1, 1])})

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def examples_numeric(serialized):
    outputs = serve_examples(serialized)
    return {'probabilities': outputs['probabilities'], 'class_id': outputs['class_id']}

  return {
      'serving_default': serve_examples.get_concrete_function(),
      IMAGE_BYTES_SIGNATURE: serve_image_bytes.get_concrete_function(),
      EXAMPLES_NUMERIC_SIGNATURE: examples_numeric.get_concrete_function(),
  }


def export_serving_model(model: keras.Model, tf_transform_output: tft.TFTransformOutput,
                         class_names: List[str], image_size: int, export_dir: str,
                         limits: ServingConfig) -> None:
  """Saves a SavedModel (without optimizer state) that TF Serving and TFMA load, its
  signatures bounded by `limits`."""
  signatures = _serving_functions(model, tf_transform_output, class_names, image_size, limits)
  # No per-layer call traces (tracing InceptionV3 layer by layer took two thirds of the
  # export and slowed every load): the signatures above, which TF Serving, TFMA and
  # predict use, do not need them, and keras.models.load_model rebuilds the (built-in)
  # layers from their configs.
  model.save(export_dir, save_format='tf', signatures=signatures, include_optimizer=False,
             save_traces=False)
  tf.io.gfile.makedirs(os.path.join(export_dir, os.path.dirname(CLASS_NAMES_FILE)))
  with tf.io.gfile.GFile(os.path.join(export_dir, CLASS_NAMES_FILE), 'w') as f:
    f.write(''.join(f'{name}\n' for name in class_names))
  with tf.io.gfile.GFile(os.path.join(export_dir, IMAGE_SIZE_FILE), 'w') as f:
    f.write(f'{image_size}\n')


def read_image_size(model_dir: str) -> Optional[int]:
  """The model's input size exported beside it; None for models exported without it."""
  path = os.path.join(model_dir, IMAGE_SIZE_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return int(f.read().strip())


def fallback_class_names(num_classes: int, known: Optional[Sequence[str]] = None) -> List[str]:
  """`known` if it fits the model's output, else class_0, class_1, ..."""
  if known and len(known) == num_classes:
    return list(known)
  return [f'class_{i}' for i in range(num_classes)]


def read_class_names(model_dir: str) -> List[str]:
  """The class names exported beside the model; [] for models exported without them."""
  path = os.path.join(model_dir, CLASS_NAMES_FILE)
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return [line.rstrip('\n') for line in f if line.strip()]
