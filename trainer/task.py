"""Trainer entry point: `run_fn` (referenced by dotted path from the pipeline)."""

import dataclasses
import json
import logging
import os
import shutil
from typing import Any, Dict, List

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from pipeline.configs import ModelConfig, TrainingConfig
from trainer import export, model as model_lib, plots
from trainer.features import IMAGE_KEY, LABEL_KEY
from trainer.preprocessing import bytes_to_pixels


def trainer_custom_config(model: ModelConfig, training: TrainingConfig,
                          class_names: List[str]) -> Dict[str, Any]:
  """What the pipeline passes to `run_fn` through the Trainer's custom_config."""
  return {'model': dataclasses.asdict(model), 'training': dataclasses.asdict(training),
          'class_names': list(class_names)}


def augmentation(seed: int) -> keras.Sequential:
  """The lesson's augmentation: flip, rotation (40 deg), shifts, zoom, contrast."""
  return keras.Sequential([
      keras.layers.RandomFlip('horizontal', seed=seed),
      keras.layers.RandomRotation(40 / 360, seed=seed),
      keras.layers.RandomTranslation(0.2, 0.2, seed=seed),
      keras.layers.RandomZoom(0.2, seed=seed),
      keras.layers.RandomContrast(0.2, seed=seed),
  ], name='augmentation')


def input_fn(file_pattern: List[str], data_accessor: tfx.components.DataAccessor,
             tf_transform_output: tft.TFTransformOutput, image_size: int,
             training: TrainingConfig, shuffle: bool, augment: bool) -> tf.data.Dataset:
  """Batches of (float pixels [B, H, W, 3] in 0..255, float label [B, 1]), one pass."""
  dataset = data_accessor.tf_dataset_factory(
      file_pattern,
      tfxio.TensorFlowDatasetOptions(batch_size=training.batch_size, label_key=LABEL_KEY,
                                     num_epochs=1, shuffle=shuffle,
                                     shuffle_seed=training.seed if shuffle else None),
      tf_transform_output.transformed_metadata.schema)

  def to_pixels(features, label):
    return bytes_to_pixels(features[IMAGE_KEY], image_size), tf.reshape(label, [-1, 1])

  dataset = dataset.map(to_pixels, num_parallel_calls=tf.data.AUTOTUNE)
  if augment:
    augmenter = augmentation(training.seed)
    dataset = dataset.map(lambda x, y: (augmenter(x, training=True), y),
                          num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.prefetch(tf.data.AUTOTUNE)


def cached_features(dataset: tf.data.Dataset, extractor: keras.Model, cache_file: str,
                    batch_size: int, shuffle_seed=None) -> tf.data.Dataset:
  """(pixels, label) batches -> (features, label) batches; features computed on the
  first pass only and streamed to `cache_file`, later epochs read them back."""
  features = dataset.map(lambda x, y: (extractor(x, training=False), y)).unbatch()
  features = features.cache(cache_file)
  if shuffle_seed is not None:
    features = features.shuffle(4 * batch_size, seed=shuffle_seed, reshuffle_each_iteration=True)
  return features.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _fit(model: keras.Model, train: tf.data.Dataset, evaluation: tf.data.Dataset,
         training: TrainingConfig, fn_args: tfx.components.FnArgs) -> keras.callbacks.History:
  return model.fit(
      train, epochs=training.epochs, validation_data=evaluation,
      steps_per_epoch=fn_args.train_steps, validation_steps=fn_args.eval_steps,
      callbacks=[keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)], verbose=2)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """Trains the head on the frozen backbone, then exports the serving model."""
  settings = fn_args.custom_config
  model_config = ModelConfig(**settings['model'])
  training = TrainingConfig(**settings['training'])
  class_names = settings['class_names']
  keras.utils.set_random_seed(training.seed)

  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  use_cache = training.feature_cache and not training.augment
  datasets = {
      split: input_fn(files, fn_args.data_accessor, tf_transform_output,
                      model_config.image_size, training,
                      shuffle=(split == 'train' and not use_cache),
                      augment=(split == 'train' and training.augment))
      for split, files in (('train', fn_args.train_files), ('eval', fn_args.eval_files))}

  num_classes = len(class_names)
  backbone = model_lib.build_backbone(model_config)
  head = model_lib.build_head(tuple(backbone.output_shape[1:]), num_classes, model_config)
  model = model_lib.assemble(backbone, head)
  logging.info('Training on %d classes %s, backbone weights: %s.', num_classes, class_names,
               model_config.weights)
  os.makedirs(fn_args.model_run_dir, exist_ok=True)
  if use_cache:
    logging.warning('Feature cache ON: the backbone is frozen and augmentation is off, so its '
                    'features are computed once and the head trains on them.')
    cache_dir = os.path.join(fn_args.model_run_dir, 'feature_cache')
    os.makedirs(cache_dir, exist_ok=True)
    extractor = model_lib.feature_extractor(backbone)
    train = cached_features(datasets['train'], extractor, os.path.join(cache_dir, 'train'),
                            training.batch_size, shuffle_seed=training.seed)
    evaluation = cached_features(datasets['eval'], extractor, os.path.join(cache_dir, 'eval'),
                                 training.batch_size)
    model_lib.compile_model(head, num_classes, training.learning_rate)
    history = _fit(head, train, evaluation, training, fn_args)
    shutil.rmtree(cache_dir, ignore_errors=True)
  else:
    logging.warning('Feature cache OFF (%s): the full model runs every epoch.',
                    'augmentation is on' if training.augment else 'training.feature_cache=false')
    model_lib.compile_model(model, num_classes, training.learning_rate)
    history = _fit(model, datasets['train'], datasets['eval'], training, fn_args)

  with open(os.path.join(fn_args.model_run_dir, 'history.json'), 'w') as f:
    json.dump(history.history, f, indent=2)
  plots.save_training_curves(history.history,
                             os.path.join(fn_args.model_run_dir, 'training_curves.png'))
  export.export_serving_model(model, tf_transform_output, class_names,
                              model_config.image_size, fn_args.serving_model_dir)
