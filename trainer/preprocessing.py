"""Transform: decode any supported image to RGB, resize, and store it compactly.

The transformed `image` is the raw uint8 pixels (H*W*3 bytes) as one string:
1 byte per value on disk instead of 4 for float32. Scaling for the backbone
happens inside the model, so training and serving see the same thing.
"""

from typing import Any, Dict, List, Optional

import tensorflow as tf
import tensorflow_transform as tft

from contract.features import CLASS_NAME_KEY, CLASS_VOCABULARY, IMAGE_KEY, LABEL_KEY
from contract.settings import ModelConfig
from trainer.orientation import jpeg_orientation, upright


def decode_and_resize(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
  """Encoded JPEG/PNG/GIF/BMP strings, shape [B] or [B, 1] -> uint8 [B, size, size, 3].

  A JPEG is turned upright as its EXIF orientation tag says (`trainer.orientation`).
  One image at a time (parallel_iterations=1): in the serving signatures a request's
  peak memory is then one decoded image, however many the request holds."""

  def decode_one(data: tf.Tensor) -> tf.Tensor:
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image = tf.image.resize(image, [image_size, image_size], antialias=True)
    # Turned after the resize: resizing to a square scales each axis on its own, so the
    # pixels are those of turning first, without turning megapixels.
    image = upright(image, jpeg_orientation(data))
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)

  return tf.map_fn(decode_one, tf.reshape(encoded, [-1]), parallel_iterations=1,
                   fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8))


def pixels_to_bytes(images: tf.Tensor) -> tf.Tensor:
  """uint8 [B, H, W, 3] -> [B] strings of exactly H*W*3 raw bytes."""
  num_bytes = tf.reduce_prod(tf.shape(images)[1:])

  def to_bytes(image: tf.Tensor) -> tf.Tensor:
    # A serialized uint8 TensorProto ends with its raw tensor_content.
    return tf.strings.substr(tf.io.serialize_tensor(image), -num_bytes, num_bytes)

  return tf.map_fn(to_bytes, images, fn_output_signature=tf.TensorSpec([], tf.string))


def bytes_to_pixels(data: tf.Tensor, image_size: int) -> tf.Tensor:
  """Inverse of `pixels_to_bytes`: [B] strings -> float32 [B, H, W, 3] in [0, 255]."""
  pixels = tf.io.decode_raw(tf.reshape(data, [-1]), tf.uint8)
  return tf.cast(tf.reshape(pixels, [-1, image_size, image_size, 3]), tf.float32)


def preprocessing_fn(inputs: Dict[str, tf.Tensor],
                     custom_config: Optional[Dict[str, Any]] = None) -> Dict[str, tf.Tensor]:
  """tf.Transform entry point (referenced by dotted path from the pipeline)."""
  image_size = int((custom_config or {}).get('image_size', ModelConfig.image_size))
  outputs = {IMAGE_KEY: pixels_to_bytes(decode_and_resize(inputs[IMAGE_KEY], image_size))}
  if LABEL_KEY in inputs:
    outputs[LABEL_KEY] = tf.reshape(inputs[LABEL_KEY], [-1])
  if CLASS_NAME_KEY in inputs:  # the class names travel to the Trainer as an asset
    label_and_name = tf.strings.join(
        [tf.strings.as_string(tf.reshape(inputs[LABEL_KEY], [-1])),
         tf.reshape(inputs[CLASS_NAME_KEY], [-1])], separator=' ')
    tft.vocabulary(label_and_name, vocab_filename=CLASS_VOCABULARY)
  return outputs


def class_names(tf_transform_output: tft.TFTransformOutput) -> List[str]:
  """Class names in label order, from the '<label> <name>' vocabulary of the train split."""
  entries = tf_transform_output.vocabulary_by_name(CLASS_VOCABULARY)
  by_label = {}
  for entry in entries:
    label, name = entry.decode('utf-8').split(' ', 1)
    if by_label.setdefault(int(label), name) != name:
      raise ValueError(f'Label {label} has two class names: {by_label[int(label)]!r}, {name!r}.')
  if sorted(by_label) != list(range(len(by_label))) or len(by_label) < 2:
    raise ValueError(f'The train split has labels {sorted(by_label)}: every class from 0 to '
                     'the last needs train examples.')
  return [by_label[i] for i in range(len(by_label))]
