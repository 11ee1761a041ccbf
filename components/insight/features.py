"""Pooled backbone features of every example, read once from ExampleGen's output.

The frozen InceptionV3 up to the cut layer (with the run's weights, as the Trainer
builds it), then global average pooling: one small vector per image, enough for a
linear model, nearest neighbours and outlier scores. The same pass saves each encoded
image to a local folder for cleanvision and thumbnails.
"""

import dataclasses
import os
from typing import Callable, List, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from contract.features import CLASS_NAME_KEY, FILENAME_KEY, IMAGE_KEY, LABEL_KEY
from contract.settings import ModelConfig
from trainer import model as model_lib
from trainer.preprocessing import decode_and_resize

_PARSE_SPEC = {
    IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    CLASS_NAME_KEY: tf.io.FixedLenFeature([], tf.string, default_value=''),
    FILENAME_KEY: tf.io.FixedLenFeature([], tf.string, default_value=''),
}


@dataclasses.dataclass
class Examples:
  """Every example of the splits read, in one order: features[i] is files[i]'s."""
  features: np.ndarray      # float32 [N, D], pooled backbone features
  labels: np.ndarray        # int64 [N], the given class ids
  class_names: List[str]    # per example
  files: List[str]          # relative to the data folder, as ExampleGen recorded them
  splits: List[str]         # per example: 'train', 'eval', ...
  local_paths: List[str]    # per example: the encoded image saved under `image_folder`

  def __len__(self) -> int:
    return len(self.files)


def pooled_extractor(config: ModelConfig) -> keras.Model:
  """image (0..255) -> frozen backbone -> global average pooling: float32 [B, channels].

  The backbone computes in the precision of the Trainer's feature cache
  (`model.feature_precision`: bfloat16 where the hardware has it)."""
  precision = model_lib.resolve_feature_precision(config.feature_precision)
  extractor = model_lib.feature_extractor(model_lib.build_backbone(config), precision)
  features = keras.layers.Activation('linear', dtype='float32')(extractor.output)
  pooled = keras.layers.GlobalAveragePooling2D(dtype='float32')(features)
  return keras.Model(extractor.input, pooled, name='pooled_features')


def _records(files: List[str], batch_size: int, image_size: int) -> tf.data.Dataset:
  """Parsed batches with their images decoded and resized as Transform does (`pixels`),
  decoding in parallel with the backbone's pass."""
  gzipped = all(f.endswith('.gz') for f in files)

  def decode(batch):
    return {**batch, 'pixels': decode_and_resize(batch[IMAGE_KEY], image_size)}

  return (tf.data.TFRecordDataset(files, compression_type='GZIP' if gzipped else '')
          .batch(batch_size)
          .map(lambda s: tf.io.parse_example(s, _PARSE_SPEC))
          .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
          .prefetch(tf.data.AUTOTUNE))


def _split_files(examples_uri: str, split: str) -> List[str]:
  return sorted(tf.io.gfile.glob(os.path.join(examples_uri, f'Split-{split}', '*')))


def _local_name(index: int, filename: str) -> str:
  """A safe local file name that keeps the extension (cleanvision picks files by it)."""
  ext = os.path.splitext(filename)[1].lower() or '.img'
  return f'{index:07d}{ext if ext.isascii() and len(ext) <= 6 else ".img"}'


def read_examples(examples_uri: str, splits: List[str], config: ModelConfig,
                  image_folder: str, batch_size: int = 32,
                  progress: Optional[Callable[[int], None]] = None) -> Examples:
  """Features of every example of `splits`; their encoded images saved to `image_folder`.
  `progress(n)` is called after each batch with its number of images."""
  extractor = pooled_extractor(config)

  @tf.function(input_signature=[tf.TensorSpec([None, config.image_size, config.image_size, 3],
                                              tf.uint8)])
  def features_of(pixels):
    return extractor(tf.cast(pixels, tf.float32), training=False)

  os.makedirs(image_folder, exist_ok=True)
  features, labels, names, files, split_of, local = [], [], [], [], [], []
  for split in splits:
    paths = _split_files(examples_uri, split)
    if not paths:
      continue
    for batch in _records(paths, batch_size, config.image_size):
      features.append(features_of(batch['pixels']).numpy())
      labels.extend(batch[LABEL_KEY].numpy().tolist())
      names.extend(n.decode() for n in batch[CLASS_NAME_KEY].numpy())
      for image, filename in zip(batch[IMAGE_KEY].numpy(), batch[FILENAME_KEY].numpy()):
        filename = filename.decode(errors='replace') or f'{split}/{len(files)}'
        path = os.path.join(image_folder, _local_name(len(files), filename))
        with open(path, 'wb') as f:
          f.write(image)
        files.append(filename)
        split_of.append(split)
        local.append(path)
      if progress:
        progress(len(batch[LABEL_KEY]))
  dims = extractor.output_shape[-1]
  return Examples(np.concatenate(features) if features else np.zeros((0, dims), np.float32),
                  np.asarray(labels, np.int64), names, files, split_of, local)

