"""The lesson's augmentation, seeded per (image, view) so that runs are reproducible.

Horizontal flip, rotation up to 40 degrees, width/height shift 0.2, zoom 0.2 and
contrast 0.2, applied in that order: the transforms, ranges, bilinear
interpolation and reflect filling of Keras' RandomFlip, RandomRotation,
RandomTranslation, RandomZoom and RandomContrast layers (their own matrix helpers
are used). Unlike those layers, which draw from a stateful generator shared by
parallel tf.data calls, every random value here comes from a stateless op seeded
by (training seed, image key, view): the k-th augmentation of an image is the same
in every run, every process and every read order. That is what makes the feature
cache of augmented views (`trainer/view_cache.py`) well defined.
"""

import tensorflow as tf
# Keras' own transform and matrix helpers: the math of its Random* layers.
from tf_keras.src.layers.preprocessing import image_preprocessing as keras_image

ROTATION = 40 / 360  # fraction of a full turn, as RandomRotation(factor)
SHIFT = 0.2          # fraction of width / height, as RandomTranslation(0.2, 0.2)
ZOOM = 0.2           # RandomZoom(0.2): the same factor in [0.8, 1.2] for both axes
CONTRAST = 0.2       # RandomContrast(0.2): factor in [0.8, 1.2]
_DRAWS = 6           # flip, angle, shift x, shift y, zoom, contrast


def image_keys(image_bytes: tf.Tensor) -> tf.Tensor:
  """Stable int64 key per image from its (transformed) bytes, shape [B]."""
  return tf.strings.to_hash_bucket_fast(tf.reshape(image_bytes, [-1]), 2**62)


def _uniform_draws(keys: tf.Tensor, view, seed: int) -> tf.Tensor:
  """[B, 6] uniforms in [0, 1), a function of (seed, key, view) only."""
  view = tf.cast(view, tf.int64)

  def draw(key):
    image_seed = tf.random.experimental.stateless_fold_in(
        tf.stack([tf.constant(seed, tf.int64), key]), view)
    return tf.random.stateless_uniform([_DRAWS], image_seed)

  return tf.map_fn(draw, tf.reshape(tf.cast(keys, tf.int64), [-1]),
                   fn_output_signature=tf.TensorSpec([_DRAWS], tf.float32))


def _symmetric(u: tf.Tensor, bound: float) -> tf.Tensor:
  """Uniform in [0, 1) -> uniform in [-bound, bound)."""
  return (2.0 * u - 1.0) * bound


def augment(pixels: tf.Tensor, keys: tf.Tensor, view, seed: int) -> tf.Tensor:
  """The `view`-th augmentation of each image: float [B, H, W, 3] in 0..255 -> same.

  `keys` ([B] int64, from `image_keys`) identify the images, `view` (int scalar)
  numbers the augmentations of one image; equal (seed, key, view) give equal output.
  """
  pixels = tf.convert_to_tensor(pixels, tf.float32)
  u = _uniform_draws(keys, view, seed)
  height = tf.cast(tf.shape(pixels)[1], tf.float32)
  width = tf.cast(tf.shape(pixels)[2], tf.float32)

  flip = u[:, 0] < 0.5
  pixels = tf.where(flip[:, None, None, None], tf.reverse(pixels, axis=[2]), pixels)
  angles = _symmetric(u[:, 1], ROTATION * 2.0 * 3.141592653589793)
  pixels = keras_image.transform(pixels, keras_image.get_rotation_matrix(angles, height, width))
  shifts = tf.concat([_symmetric(u[:, 2:3], SHIFT) * width,
                      _symmetric(u[:, 3:4], SHIFT) * height], axis=1)
  pixels = keras_image.transform(pixels, keras_image.get_translation_matrix(shifts))
  zoom = 1.0 + _symmetric(u[:, 4:5], ZOOM)
  pixels = keras_image.transform(
      pixels, keras_image.get_zoom_matrix(tf.concat([zoom, zoom], axis=1), height, width))
  contrast = (1.0 + _symmetric(u[:, 5], CONTRAST))[:, None, None, None]
  mean = tf.reduce_mean(pixels, axis=[1, 2], keepdims=True)
  return tf.clip_by_value((pixels - mean) * contrast + mean, 0.0, 255.0)
