"""Offline stand-in for ImageNet weights: pretrain InceptionV3 on a source task.

    class-folder images -> [-1, 1] -> top-less InceptionV3 (random init, trained,
    BatchNorm in training mode) -> GlobalAveragePooling -> Dense softmax

The temporary head is thrown away; the backbone is saved with
`base.save_weights(path)`, the `_notop.h5` form the lesson loads, so
`transfer-pipeline run --weights path` (trainer.model.load_weights_file) uses it.
After training, every BatchNorm's moving statistics are re-estimated from the
source images (trainer.model.calibrate_batchnorm, as write_calibrated_weights does): the
statistics tracked during training lag behind the changing kernels.
"""

import dataclasses
import os
import time
from typing import Callable, List, Optional

import numpy as np
import tf_keras as keras

from tools.class_folder import load_class_folder
from pipeline.configs import MIN_IMAGE_SIZE, ConfigError
from trainer import model as model_lib

# Tracing InceptionV3's training graph takes longer than a few eager steps.
EAGER_MAX_STEPS = 10


@dataclasses.dataclass
class PretrainResult:
  path: str
  class_names: List[str]
  num_train: int
  num_holdout: int
  train_accuracy: float     # last epoch, BatchNorm in training mode
  tracked_accuracy: float   # inference mode, moving statistics tracked while training
  holdout_accuracy: float   # inference mode after BatchNorm recalibration (what is saved)
  seconds: float
  base: keras.Model         # the trained top-less InceptionV3


def split_holdout(labels: np.ndarray, percent: int, seed: int) -> np.ndarray:
  """Boolean mask of a stratified held-out share; classes with < 2 images stay in train."""
  rng = np.random.default_rng(seed)
  holdout = np.zeros(len(labels), bool)
  for label in np.unique(labels):
    index = rng.permutation(np.flatnonzero(labels == label))
    count = min(len(index) - 1, int(round(len(index) * percent / 100)))
    holdout[index[:max(count, 0)]] = True
  return holdout


def build_classifier(image_size: int, num_classes: int):
  """(top-less InceptionV3, pixels 0..255 -> softmax model around it)."""
  base = keras.applications.InceptionV3(include_top=False, weights=None,
                                        input_shape=(image_size, image_size, 3))
  images = keras.Input(shape=(image_size, image_size, 3), name='image')
  x = keras.layers.GlobalAveragePooling2D()(base(model_lib.inception_preprocess()(images)))
  outputs = keras.layers.Dense(num_classes, activation='softmax', name='source_head')(x)
  return base, keras.Model(images, outputs, name='pretrain_classifier')


def _accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray,
              batch_size: int = 64) -> float:
  """Inference-mode accuracy (eager calls: no predict function to trace)."""
  predicted = [np.argmax(model(images[i:i + batch_size].astype('float32'), training=False), 1)
               for i in range(0, len(images), batch_size)]
  return float(np.mean(np.concatenate(predicted) == labels))


def _check_args(output: str, image_size: int, epochs: int, holdout_percent: int) -> None:
  if not output.endswith('.h5'):
    raise ConfigError(f'--output must be an .h5 file (the _notop.h5 form), got {output!r}.')
  if image_size < MIN_IMAGE_SIZE:
    raise ConfigError(f'--image-size must be >= {MIN_IMAGE_SIZE} (InceptionV3), got {image_size}.')
  if epochs < 1:
    raise ConfigError(f'--epochs must be >= 1, got {epochs}.')
  if not 0 <= holdout_percent < 100:
    raise ConfigError(f'--holdout-percent must be in 0..99, got {holdout_percent}.')


def _fit(model: keras.Model, images: np.ndarray, labels: np.ndarray, epochs: int,
         batch_size: int, learning_rate: float, log: Callable[[str], None]) -> float:
  """Trains with BatchNorm in training mode, logs each epoch; returns the last accuracy."""
  steps = epochs * -(-len(images) // batch_size)
  model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                loss='sparse_categorical_crossentropy', metrics=['accuracy'],
                run_eagerly=steps <= EAGER_MAX_STEPS)
  began = [time.time()]
  progress = keras.callbacks.LambdaCallback(
      on_epoch_begin=lambda epoch, logs: began.__setitem__(0, time.time()),
      on_epoch_end=lambda epoch, logs: log(
          f'epoch {epoch + 1}/{epochs}: loss {logs["loss"]:.4f}, accuracy '
          f'{logs["accuracy"]:.4f} ({time.time() - began[0]:.0f} s)'))
  history = model.fit(images.astype('float32'), labels, batch_size=batch_size, epochs=epochs,
                      shuffle=True, callbacks=[progress], verbose=0)
  return float(history.history['accuracy'][-1])


def pretrain(data: str, output: str, image_size: int = 75, epochs: int = 5,
             batch_size: int = 32, learning_rate: float = 1e-3, holdout_percent: int = 10,
             per_class: int = 0, seed: int = 0,
             log: Optional[Callable[[str], None]] = print) -> PretrainResult:
  """Trains InceptionV3 + a temporary head on `data`, saves the backbone to `output`."""
  _check_args(output, image_size, epochs, holdout_percent)
  log = log or (lambda _: None)
  start = time.time()
  source = load_class_folder(data, image_size, per_class)
  holdout = split_holdout(source.labels, holdout_percent, seed)
  train_x, train_y = source.images[~holdout], source.labels[~holdout]
  eval_x, eval_y = (source.images[holdout], source.labels[holdout]) if holdout.any() else (
      train_x, train_y)
  log(f'Pretraining on {len(train_y)} images of {len(source.class_names)} classes '
      f'{source.class_names} ({int(holdout.sum())} held out, {source.skipped} skipped), '
      f'{image_size}px, {epochs} epochs')
  keras.utils.set_random_seed(seed)
  base, model = build_classifier(image_size, len(source.class_names))
  train_accuracy = _fit(model, train_x, train_y, epochs, batch_size, learning_rate, log)
  tracked_accuracy = _accuracy(model, eval_x, eval_y)
  model_lib.calibrate_batchnorm(base, train_x)
  accuracy = _accuracy(model, eval_x, eval_y)
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  base.save_weights(output)
  result = PretrainResult(output, source.class_names, len(train_y), int(holdout.sum()),
                          train_accuracy, tracked_accuracy, accuracy, time.time() - start, base)
  log(f'Source accuracy: {accuracy:.4f} on {len(eval_y)} '
      f'{"held-out" if holdout.any() else "training"} images, inference mode, BatchNorm '
      f'statistics recalibrated (as tracked in training: {tracked_accuracy:.4f})')
  log(f'Wrote backbone weights to {output} ({result.seconds:.0f} s)')
  return result
