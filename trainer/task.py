"""Trainer entry point: `run_fn` (referenced by dotted path from the pipeline)."""

import dataclasses
import json
import logging
import os
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


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """Trains the head on the frozen backbone, then exports the serving model."""
  settings = fn_args.custom_config
  model_config = ModelConfig(**settings['model'])
  training = TrainingConfig(**settings['training'])
  class_names = settings['class_names']
  keras.utils.set_random_seed(training.seed)

  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  datasets = {
      split: input_fn(files, fn_args.data_accessor, tf_transform_output,
                      model_config.image_size, training, shuffle=(split == 'train'),
                      augment=(split == 'train' and training.augment))
      for split, files in (('train', fn_args.train_files), ('eval', fn_args.eval_files))}

  model = model_lib.build_model(len(class_names), model_config, training.learning_rate)
  logging.info('Training %s on %d classes %s, backbone weights: %s, augmentation: %s.',
               model.name, len(class_names), class_names, model_config.weights,
               'on' if training.augment else 'off')
  history = model.fit(
      datasets['train'], epochs=training.epochs, validation_data=datasets['eval'],
      steps_per_epoch=fn_args.train_steps, validation_steps=fn_args.eval_steps,
      callbacks=[keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)], verbose=2)

  os.makedirs(fn_args.model_run_dir, exist_ok=True)
  with open(os.path.join(fn_args.model_run_dir, 'history.json'), 'w') as f:
    json.dump(history.history, f, indent=2)
  plots.save_training_curves(history.history,
                             os.path.join(fn_args.model_run_dir, 'training_curves.png'))
  export.export_serving_model(model, tf_transform_output, class_names,
                              model_config.image_size, fn_args.serving_model_dir)
