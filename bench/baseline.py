"""The lesson as a plain script: no pipeline, the same frozen InceptionV3@mixed7 + head.

  TF_USE_LEGACY_KERAS=1 python bench/baseline.py --data data/digits --weights w.h5 --epochs 20

`--data` holds train/<class>/ and validation/<class>/ (or just class folders: then
20% is held out). Augmentation is off unless `--augment`: then the lesson's (flip,
rotation 40 deg, shifts 0.2, zoom 0.2, contrast 0.2) runs on every training batch.
"""

import argparse
import json
import os
import time
from typing import Any, Dict, Tuple

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

# pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf
import tf_keras as keras


def load_datasets(data: str, image_size: int, batch_size: int,
                  seed: int) -> Tuple[tf.data.Dataset, tf.data.Dataset, int]:
  """(train, validation, number of classes) with `image_dataset_from_directory`."""
  options = dict(image_size=(image_size, image_size), batch_size=batch_size, seed=seed,
                 color_mode='rgb', label_mode='int')
  if os.path.isdir(os.path.join(data, 'train')):
    train = keras.utils.image_dataset_from_directory(os.path.join(data, 'train'), **options)
    val = keras.utils.image_dataset_from_directory(os.path.join(data, 'validation'),
                                                   shuffle=False, **options)
  else:
    train, val = keras.utils.image_dataset_from_directory(
        data, validation_split=0.2, subset='both', **options)
  num_classes = len(train.class_names)

  def prepare(images, labels):
    labels = tf.cast(labels, tf.float32)
    return images, tf.reshape(labels, [-1, 1]) if num_classes == 2 else labels

  return (train.map(prepare).prefetch(tf.data.AUTOTUNE),
          val.map(prepare).prefetch(tf.data.AUTOTUNE), num_classes)


def augmentation(seed: int) -> keras.Sequential:
  """The lesson's augmentation as Keras layers (active in training only)."""
  return keras.Sequential([
      keras.layers.RandomFlip('horizontal', seed=seed),
      keras.layers.RandomRotation(40 / 360, seed=seed),
      keras.layers.RandomTranslation(0.2, 0.2, seed=seed),
      keras.layers.RandomZoom(0.2, seed=seed),
      keras.layers.RandomContrast(0.2, seed=seed),
  ], name='augmentation')


def build_model(image_size: int, weights: str, num_classes: int,
                pooling: str = 'flatten', augment: bool = False) -> keras.Model:
  """InceptionV3 (local weights) frozen, cut at mixed7, Flatten-Dense-Dropout head
  (GlobalAveragePooling2D instead of Flatten for pooling='average'), after the
  lesson's augmentation layers when `augment`."""
  base = keras.applications.InceptionV3(input_shape=(image_size, image_size, 3),
                                        include_top=False, weights=None)
  if weights != 'none':
    base.load_weights(weights)
  for layer in base.layers:
    layer.trainable = False
  images = keras.Input((image_size, image_size, 3))
  inner = keras.Model(base.input, base.get_layer('mixed7').output)
  x = augmentation(seed=0)(images) if augment else images
  x = inner(keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(x), training=False)
  x = (keras.layers.GlobalAveragePooling2D() if pooling == 'average' else keras.layers.Flatten())(x)
  x = keras.layers.Dense(1024, activation='relu')(x)
  x = keras.layers.Dropout(0.2)(x)
  if num_classes == 2:
    outputs = keras.layers.Dense(1, activation='sigmoid')(x)
    loss = 'binary_crossentropy'
  else:
    outputs = keras.layers.Dense(num_classes, activation='softmax')(x)
    loss = 'sparse_categorical_crossentropy'
  model = keras.Model(images, outputs)
  model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=1e-4), loss=loss,
                metrics=['accuracy'])
  return model


def train(data: str, weights: str, epochs: int, image_size: int = 150,
          batch_size: int = 32, seed: int = 42, pooling: str = 'flatten',
          augment: bool = False) -> Dict[str, Any]:
  """Loads, builds and fits; returns timings (after imports) and final metrics."""
  start = time.time()
  keras.utils.set_random_seed(seed)
  train_ds, val_ds, num_classes = load_datasets(data, image_size, batch_size, seed)
  model = build_model(image_size, weights, num_classes, pooling, augment)
  fit_start = time.time()
  history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=2)
  end = time.time()
  return {'seconds': end - start, 'fit_seconds': end - fit_start, 'epochs': epochs,
          'val_accuracy': history.history['val_accuracy'][-1]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', required=True)
  parser.add_argument('--weights', default='none', help="a _notop.h5 file or 'none'")
  parser.add_argument('--epochs', type=int, default=20)
  parser.add_argument('--image-size', type=int, default=150)
  parser.add_argument('--batch-size', type=int, default=32)
  parser.add_argument('--pooling', choices=('flatten', 'average'), default='flatten')
  parser.add_argument('--augment', action='store_true', help="the lesson's augmentation")
  parser.add_argument('--json', help='also write the result here')
  args = parser.parse_args()
  result = train(args.data, args.weights, args.epochs, args.image_size, args.batch_size,
                 pooling=args.pooling, augment=args.augment)
  print(json.dumps(result, indent=2))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  main()
