"""Grad-CAM (Selvaraju et al., 2017) at the cut layer: where in the image the backbone's
features pushed the model toward the class it predicted.

The exported model is `image -> inception_preprocess -> backbone (to the cut layer) ->
head`; the heatmap is the ReLU of the cut layer's activations weighted by the mean
gradient of the predicted class's probability over each channel.
"""

from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras
from matplotlib import colormaps
from PIL import Image

from trainer.preprocessing import decode_and_resize

HEAD_LAYER = 'head'


def load_keras_model(model_dir: str) -> keras.Model:
  return keras.models.load_model(model_dir, compile=False)


def _stages(model: keras.Model):
  """(layers from the image to the cut layer, the head)."""
  head = model.get_layer(HEAD_LAYER)
  inbound = head.inbound_nodes[0].inbound_layers
  backbone = inbound[0] if isinstance(inbound, list) else inbound
  layers = model.layers
  before = layers[1:layers.index(backbone) + 1]  # preprocessing layers, then the backbone
  return before, head


def heatmaps(model: keras.Model, pixels: np.ndarray, class_ids: Sequence[int]) -> np.ndarray:
  """float [B, h, w] in 0..1 at the cut layer's resolution; `pixels`: [B, S, S, 3] 0..255."""
  before, head = _stages(model)
  x = tf.convert_to_tensor(pixels, tf.float32)
  for layer in before:
    x = layer(x, training=False)
  ids = tf.constant(list(class_ids), tf.int32)
  with tf.GradientTape() as tape:
    tape.watch(x)
    probabilities = head(x, training=False)
    if probabilities.shape[-1] == 1:  # sigmoid: P(class 1); class 0 is 1 - P
      probabilities = tf.concat([1.0 - probabilities, probabilities], axis=-1)
    score = tf.gather(probabilities, ids, batch_dims=1)
  gradients = tape.gradient(score, x)
  weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
  cam = tf.nn.relu(tf.reduce_sum(weights * x, axis=-1)).numpy()
  peak = cam.max(axis=(1, 2), keepdims=True)
  return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
  """The heatmap (jet colours) over an RGB uint8 image, at the image's size."""
  height, width = image.shape[:2]
  resized = np.asarray(Image.fromarray(np.uint8(heatmap * 255)).resize(
      (width, height), Image.BILINEAR), np.float32) / 255.0
  colours = colormaps['jet'](resized)[..., :3] * 255.0
  return np.uint8((1 - alpha) * image.astype(np.float32) + alpha * colours)


def overlays_for(model_dir: str, images: Sequence[bytes],
                 class_ids: Sequence[int]) -> Optional[List[np.ndarray]]:
  """One overlay per encoded image (at the model's input size), for `class_ids`; None
  when there is nothing to draw."""
  if not images:
    return None
  model = load_keras_model(model_dir)
  size = int(model.input_shape[1])
  pixels = decode_and_resize(tf.constant(list(images)), size).numpy()
  maps = heatmaps(model, pixels, class_ids)
  return [overlay(image, heatmap) for image, heatmap in zip(pixels, maps)]
