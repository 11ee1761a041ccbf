"""The lesson's model with the Keras functional API.

    image (0..255) -> scale to [-1, 1] -> InceptionV3 up to `mixed7` (frozen)
                   -> Flatten -> Dense(1024, relu) -> Dropout(0.2)
                   -> Dense(1, sigmoid) for two classes, Dense(n, softmax) for more
"""

import math
import os
from typing import Callable, ContextManager, List, Optional, Set, Tuple

import h5py
import tensorflow as tf
import tf_keras as keras

from contract.settings import ModelConfig
from trainer import artifact_io


class ModelConfigError(ValueError):
  """The weights file or cut layer cannot be used; raised before training."""


def inception_preprocess() -> keras.layers.Layer:
  """Pixels 0..255 -> InceptionV3's input range -1..1 (keras' inception_v3.preprocess_input)."""
  return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name='inception_preprocess')


def _inception_v3(image_size: int, weights: str) -> keras.Model:
  """Top-less InceptionV3 with 'imagenet', no ('none') or `.h5` file weights (a local
  path or any URI TensorFlow reads, e.g. gs://...)."""
  if weights in ('imagenet', 'none'):
    return keras.applications.InceptionV3(
        include_top=False, input_shape=(image_size, image_size, 3),
        weights='imagenet' if weights == 'imagenet' else None)
  with _local_weights_file(weights) as local:  # h5py reads local files only
    check_weights_file(local, weights)  # before the seconds it takes to build the network
    base = keras.applications.InceptionV3(include_top=False, weights=None,
                                          input_shape=(image_size, image_size, 3))
    load_weights_file(base, local, weights)
  return base


def _local_weights_file(path: str) -> ContextManager[str]:
  """`path` itself when local, else a temporary local copy (deleted afterwards)."""
  if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
    raise ModelConfigError(f'Weights file {path} does not exist.')
  return artifact_io.local_copy(path)


def check_weights_file(path: str, name: Optional[str] = None) -> None:
  """Fails fast for a missing local file or one that is not HDF5 (`name`: how the error
  names it, e.g. the URI it was copied from)."""
  name = name or path
  if not os.path.isfile(path):
    raise ModelConfigError(f'Weights file {name} does not exist.')
  if not h5py.is_hdf5(path):
    raise ModelConfigError(f'Weights file {name} is not an HDF5 (.h5) file.')


def load_weights_file(model: keras.Model, path: str, name: Optional[str] = None) -> None:
  """The lesson's `load_weights(local_weights_file)`, with clear errors.

  Only weights are read from the HDF5 file: no layer code or config is
  deserialized, so a weights file cannot run code.
  """
  name = name or path
  check_weights_file(path, name)
  try:
    model.load_weights(path)
  except (ValueError, OSError, KeyError) as e:
    raise ModelConfigError(
        f'Weights file {name} does not fit a top-less InceptionV3 at this image size '
        f'(is it an ..._notop.h5 file?), or is truncated: {e}') from e


def cut_layer_names(base: keras.Model) -> List[str]:
  """The sensible cut points: outputs of InceptionV3's mixed blocks."""
  return [layer.name for layer in base.layers
          if layer.name.startswith('mixed') and '_' not in layer.name]


def build_backbone(config: ModelConfig) -> keras.Model:
  """Frozen InceptionV3 from its input up to `config.cut_layer`."""
  base = _inception_v3(config.image_size, config.weights)
  try:
    cut = base.get_layer(config.cut_layer)
  except ValueError:
    raise ModelConfigError(
        f"Unknown cut layer '{config.cut_layer}'. Valid names: "
        f"{', '.join(cut_layer_names(base))} (or any other InceptionV3 layer name).") from None
  backbone = keras.Model(base.input, cut.output, name=f'inception_v3_{config.cut_layer}')
  for layer in backbone.layers:
    layer.trainable = False
  backbone.trainable = False
  return backbone


def fine_tune_start(backbone: keras.Model, layer_name: str) -> int:
  """Index of `layer_name` in `backbone.layers`; ModelConfigError listing valid names."""
  names = [layer.name for layer in backbone.layers]
  if layer_name not in names:
    raise ModelConfigError(
        f"Unknown training.fine_tune_from layer '{layer_name}': not in the backbone "
        f"(cut at '{names[-1]}'). Valid names: {', '.join(cut_layer_names(backbone))} "
        f"(or any other layer name before the cut layer).")
  return names.index(layer_name)


def unfreeze_from(backbone: keras.Model, layer_name: str) -> List[str]:
  """Makes `layer_name` and every later backbone layer trainable (Keras guide style).

  Layers before it stay frozen. BatchNormalization layers stay frozen everywhere
  (trainable=False), so they run in inference mode: their moving mean/variance
  and gamma/beta never change. Order is `backbone.layers` (topological): from a
  mixed block, that is every layer after the block. Recompile before training.
  Returns the names of the layers with weights that became trainable.
  """
  start = fine_tune_start(backbone, layer_name)
  backbone.trainable = True  # sets every layer; then refreeze per layer below
  unfrozen = []
  for index, layer in enumerate(backbone.layers):
    layer.trainable = (index >= start
                       and not isinstance(layer, keras.layers.BatchNormalization))
    if layer.trainable and layer.weights:
      unfrozen.append(layer.name)
  return unfrozen


def build_head(feature_shape: Tuple[int, ...], num_classes: int,
               config: ModelConfig) -> keras.Model:
  """Flatten (or GlobalAveragePooling2D) -> Dense(relu) -> Dropout -> sigmoid (2 classes)
  or softmax (more)."""
  features = keras.Input(shape=feature_shape, name='features')
  if config.pooling == 'average':
    x = keras.layers.GlobalAveragePooling2D()(features)
  else:
    x = keras.layers.Flatten()(features)
  x = keras.layers.Dense(config.dense_units, activation='relu')(x)
  # A tf.random.Generator (seeded by keras.utils.set_random_seed): the default stateful
  # ops are not reset by that seed inside XLA-compiled steps, so two runs in one process
  # would draw different masks.
  x = keras.layers.Dropout(config.dropout, force_generator=True)(x)
  if num_classes == 2:
    outputs = keras.layers.Dense(1, activation='sigmoid', name='probability')(x)
  else:
    outputs = keras.layers.Dense(num_classes, activation='softmax', name='probabilities')(x)
  return keras.Model(features, outputs, name='head')


def feature_extractor(backbone: keras.Model, precision: str = 'float32') -> keras.Model:
  """image (float pixel values 0..255) -> [-1, 1] -> frozen backbone features.

  precision 'bfloat16': a copy of the backbone computing in bfloat16 (Keras'
  mixed_bfloat16 policy, float32 weights), whose features come out in bfloat16.
  """
  size = backbone.input_shape[1]
  if precision == 'bfloat16':
    backbone = reduced_precision_copy(backbone, 'mixed_bfloat16')
  images = keras.Input(shape=(size, size, 3), name='image')
  return keras.Model(images, backbone(inception_preprocess()(images), training=False),
                     name='feature_extractor')


def reduced_precision_copy(backbone: keras.Model, policy: str) -> keras.Model:
  """The same frozen layers and weights, each layer computing under `policy`."""
  def clone(layer):
    config = layer.get_config()
    config['dtype'] = policy
    return layer.__class__.from_config(config)

  copy = keras.models.clone_model(backbone, clone_function=clone)
  copy.set_weights(backbone.get_weights())
  copy.trainable = False
  return copy


BF16_CPU_FLAGS = ('avx512_bf16', 'amx_bf16')


def cpu_flags(cpuinfo: str = '/proc/cpuinfo') -> Set[str]:
  """The CPU's feature flags (empty where /proc/cpuinfo does not exist)."""
  try:
    with open(cpuinfo) as f:
      return {flag for line in f if line.startswith('flags')
              for flag in line.split(':', 1)[1].split()}
  except OSError:
    return set()


def _gpu_has_bfloat16() -> bool:
  for gpu in tf.config.list_physical_devices('GPU'):
    capability = tf.config.experimental.get_device_details(gpu).get('compute_capability')
    if capability and capability >= (8, 0):
      return True
  return False


def resolve_feature_precision(setting: str, flags: Optional[Set[str]] = None) -> str:
  """'auto' -> 'bfloat16' where the hardware computes it natively, else 'float32'."""
  if setting != 'auto':
    return setting
  flags = cpu_flags() if flags is None else flags
  native = bool(flags & set(BF16_CPU_FLAGS)) or _gpu_has_bfloat16()
  return 'bfloat16' if native else 'float32'


def assemble(backbone: keras.Model, head: keras.Model) -> keras.Model:
  """image (float pixel values 0..255) -> [-1, 1] -> backbone -> head."""
  extractor = feature_extractor(backbone)
  return keras.Model(extractor.input, head(extractor.output), name='transfer_model')


def compile_model(model: keras.Model, num_classes: int, learning_rate: float,
                  jit_compile: bool = False) -> None:
  """RMSprop and cross-entropy, as in the lesson. `jit_compile` fuses each train step
  with XLA: 1.6x faster for the head alone on CPU (the optimizer update over the 38M
  head weights is memory-bound), slower for the whole InceptionV3."""
  loss = 'binary_crossentropy' if num_classes == 2 else 'sparse_categorical_crossentropy'
  model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate),
                loss=loss, metrics=['accuracy'], jit_compile=jit_compile)


def learning_rate_schedule(base: float, decay: str, first_epoch: int,
                           end_epoch: int) -> Callable[[int], float]:
  """epoch -> learning rate for epochs `first_epoch` .. `end_epoch - 1`: `base` throughout
  ('constant', the lesson's) or a half cosine from `base` towards 0 ('cosine': over 20
  epochs the last one runs at 0.6% of `base`)."""
  epochs = max(1, end_epoch - first_epoch)

  def rate(epoch: int) -> float:
    if decay == 'constant':
      return base
    return base * 0.5 * (1.0 + math.cos(math.pi * (epoch - first_epoch) / epochs))

  return rate


def write_calibrated_weights(path: str, images, seed: int = 0,
                             batchnorm_offset: float = 1.0) -> None:
  """Writes a top-less InceptionV3 `.h5` whose BatchNorm statistics fit `images`.

  The offline stand-in for pretrained weights: convolution kernels stay random,
  but every BatchNorm's moving mean and variance are estimated from the images
  (one training-mode pass with momentum 0; labels are not used). With Keras'
  default statistics, random `mixed7` features are ~1e-3 in scale and a head
  barely learns; after calibration they keep unit scale, as pretrained ones do.

  `batchnorm_offset` is every BatchNorm's beta. With 0, each ReLU zeroes half of
  every channel and the random network is chaotic: a 1-pixel change of the input
  moves `mixed7` features by ~77%, bfloat16 by ~30% and TFLite's dynamic-range
  quantization by ~45%. With 1.0 (84% of activations pass), those are ~8%, ~3%
  and ~5%, and a linear probe on the features separates digits 3 and 8 better
  (0.98 vs 0.88): a steadier stand-in for pretrained features.
  `images`: float or uint8 array [N, S, S, 3] with pixel values 0..255.
  """
  keras.utils.set_random_seed(seed)
  size = images.shape[1]
  base = keras.applications.InceptionV3(include_top=False, weights=None,
                                        input_shape=(size, size, 3))
  for layer in base.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.beta.assign(tf.fill(layer.beta.shape, batchnorm_offset))
  calibrate_batchnorm(base, images, batch_size=len(images))
  base.save_weights(path)


def calibrate_batchnorm(base: keras.Model, images, batch_size: int = 64) -> None:
  """Sets every BatchNorm's moving mean/variance to their average over `images`.

  Training-mode passes with momentum (i-1)/i on batch i: a running average of the
  batch statistics (one batch: momentum 0). `images`: pixel values 0..255.
  """
  layers = [l for l in base.layers if isinstance(l, keras.layers.BatchNormalization)]
  saved = [l.momentum for l in layers]
  for i, start in enumerate(range(0, len(images), batch_size), 1):
    for layer in layers:
      layer.momentum = (i - 1) / i
    base(inception_preprocess()(images[start:start + batch_size].astype('float32')),
         training=True)
  for layer, momentum in zip(layers, saved):
    layer.momentum = momentum
