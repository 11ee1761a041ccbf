"""Trainer entry point: `run_fn` (referenced by dotted path from the pipeline)."""

import dataclasses
import json
import logging
import os
import shutil
from typing import Any, Dict, List, Mapping, Optional

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

import console
from pipeline.configs import ExportConfig, ModelConfig, TrainingConfig
from trainer import export, model as model_lib, plots
from trainer.image_limits import ServingLimits
from trainer.epoch_lines import EpochLines
from trainer.features import IMAGE_KEY, LABEL_KEY
from trainer import preprocessing
from trainer.preprocessing import bytes_to_pixels


def trainer_custom_config(model: ModelConfig, training: TrainingConfig,
                          serving: Mapping[str, int],
                          export_config: Optional[ExportConfig] = None) -> Dict[str, Any]:
  """What the pipeline passes to `run_fn` through the Trainer's custom_config (no class
  names: they come with the data, as Transform's class vocabulary); `serving`: the
  config's `serving` section as plain values (ServingLimits fields)."""
  return {'model': dataclasses.asdict(model), 'training': dataclasses.asdict(training),
          'serving': dict(ServingLimits(**serving)._asdict()),
          'export': dataclasses.asdict(export_config or ExportConfig())}


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


def write_cache(features: tf.data.Dataset, batch_size: int, label: str) -> None:
  """The feature pass: reads `features` (a cached dataset) to the end once, which writes
  its cache file, with a progress bar (or periodic lines) on the console."""
  with console.Progress(label=label, unit='images') as bar:
    for _, labels in features.batch(batch_size).prefetch(tf.data.AUTOTUNE):
      bar.update(int(tf.shape(labels)[0]))


def cached_features(dataset: tf.data.Dataset, extractor: keras.Model, cache_file: str,
                    batch_size: int, shuffle_seed=None) -> tf.data.Dataset:
  """(pixels, label) batches -> (features, label) batches; the features are computed
  now, once, and streamed to `cache_file`; every epoch reads them back."""
  features = dataset.map(lambda x, y: (extractor(x, training=False), y)).unbatch()
  features = features.cache(cache_file)
  write_cache(features, batch_size, f'Feature pass ({os.path.basename(cache_file)})')
  if shuffle_seed is not None:
    features = features.shuffle(4 * batch_size, seed=shuffle_seed, reshuffle_each_iteration=True)
  return features.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _pixel_datasets(fn_args: tfx.components.FnArgs, tf_transform_output: tft.TFTransformOutput,
                    model_config: ModelConfig, training: TrainingConfig,
                    shuffle_train: bool) -> Dict[str, tf.data.Dataset]:
  """'train' (augmented when configured) and 'eval' pixel datasets."""
  return {
      split: input_fn(files, fn_args.data_accessor, tf_transform_output,
                      model_config.image_size, training,
                      shuffle=(split == 'train' and shuffle_train),
                      augment=(split == 'train' and training.augment))
      for split, files in (('train', fn_args.train_files), ('eval', fn_args.eval_files))}


def _fit(model: keras.Model, train: tf.data.Dataset, evaluation: tf.data.Dataset,
         fn_args: tfx.components.FnArgs, epochs: int,
         initial_epoch: int = 0) -> keras.callbacks.History:
  return model.fit(
      train, epochs=epochs, initial_epoch=initial_epoch, validation_data=evaluation,
      steps_per_epoch=fn_args.train_steps, validation_steps=fn_args.eval_steps,
      callbacks=[keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir), EpochLines()],
      verbose=0)


def _train_head(model: keras.Model, backbone: keras.Model, head: keras.Model,
                datasets: Dict[str, tf.data.Dataset], use_cache: bool, num_classes: int,
                training: TrainingConfig,
                fn_args: tfx.components.FnArgs) -> keras.callbacks.History:
  """Phase one: the head on the frozen backbone, through the feature cache or not."""
  if not use_cache:
    logging.info('Feature cache OFF (%s): the full model runs every epoch.',
                    'augmentation is on' if training.augment else 'training.feature_cache=false')
    model_lib.compile_model(model, num_classes, training.learning_rate)
    return _fit(model, datasets['train'], datasets['eval'], fn_args, training.epochs)
  logging.info('Feature cache ON: the backbone is frozen and augmentation is off, so its '
                  'features are computed once and the head trains on them.')
  cache_dir = os.path.join(fn_args.model_run_dir, 'feature_cache')
  os.makedirs(cache_dir, exist_ok=True)
  extractor = model_lib.feature_extractor(backbone)
  train = cached_features(datasets['train'], extractor, os.path.join(cache_dir, 'train'),
                          training.batch_size, shuffle_seed=training.seed)
  evaluation = cached_features(datasets['eval'], extractor, os.path.join(cache_dir, 'eval'),
                               training.batch_size)
  model_lib.compile_model(head, num_classes, training.learning_rate, jit_compile=True)
  try:
    return _fit(head, train, evaluation, fn_args, training.epochs)
  finally:  # the cache can be large: never leave it in the ModelRun artifact
    shutil.rmtree(cache_dir, ignore_errors=True)


def fine_tune(model: keras.Model, backbone: keras.Model, train: tf.data.Dataset,
              evaluation: tf.data.Dataset, num_classes: int, training: TrainingConfig,
              fn_args: tfx.components.FnArgs) -> keras.callbacks.History:
  """Phase two: unfreezes `backbone` from `training.fine_tune_from` (BatchNorm stays
  frozen, in inference mode) and trains the assembled `model` on pixel batches at
  `training.fine_tune_learning_rate`, continuing the epoch count of phase one."""
  unfrozen = model_lib.unfreeze_from(backbone, training.fine_tune_from)
  logging.info('Fine-tuning: %d backbone layers with weights unfrozen from %s to %s '
                  '(BatchNorm stays frozen), learning rate %g, epochs %d-%d.',
                  len(unfrozen), training.fine_tune_from, backbone.layers[-1].name,
                  training.fine_tune_learning_rate, training.epochs + 1,
                  training.epochs + training.fine_tune_epochs)
  model_lib.compile_model(model, num_classes, training.fine_tune_learning_rate)
  return _fit(model, train, evaluation, fn_args,
              epochs=training.epochs + training.fine_tune_epochs, initial_epoch=training.epochs)


def merge_histories(first: Dict[str, List[float]],
                    second: Dict[str, List[float]]) -> Dict[str, List[float]]:
  """Per-metric epoch lists of phase one followed by phase two."""
  return {key: list(first.get(key, [])) + list(second.get(key, []))
          for key in list(first) + [k for k in second if k not in first]}


def _save_history(history: Dict[str, List[float]], model_run_dir: str,
                  fine_tune_start: Optional[int]) -> None:
  with open(os.path.join(model_run_dir, 'history.json'), 'w') as f:
    json.dump(history, f, indent=2)
  plots.save_training_curves(history, os.path.join(model_run_dir, 'training_curves.png'),
                             fine_tune_start=fine_tune_start)


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """Trains the head on the frozen backbone, optionally fine-tunes, then exports."""
  settings = fn_args.custom_config
  model_config = ModelConfig(**settings['model'])
  training = TrainingConfig(**settings['training'])
  if fn_args.hyperparameters:  # the Tuner's best trial
    from trainer import tuning  # pylint: disable=g-import-not-at-top
    model_config, training = tuning.apply_hyperparameters(fn_args.hyperparameters,
                                                          model_config, training)
    logging.warning('Hyperparameters from the Tuner: %s', fn_args.hyperparameters['values'])
  keras.utils.set_random_seed(training.seed)

  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  class_names = preprocessing.class_names(tf_transform_output)
  use_cache = training.feature_cache and not training.augment
  datasets = _pixel_datasets(fn_args, tf_transform_output, model_config, training,
                             shuffle_train=not use_cache)

  num_classes = len(class_names)
  backbone = model_lib.build_backbone(model_config)
  if training.fine_tune_from:  # an unknown layer fails before any training
    model_lib.fine_tune_start(backbone, training.fine_tune_from)
  head = model_lib.build_head(tuple(backbone.output_shape[1:]), num_classes, model_config)
  model = model_lib.assemble(backbone, head)
  logging.info('Training on %d classes %s, backbone weights: %s.', num_classes, class_names,
               model_config.weights)
  os.makedirs(fn_args.model_run_dir, exist_ok=True)
  history = _train_head(model, backbone, head, datasets, use_cache, num_classes, training,
                        fn_args).history
  fine_tune_start = None
  if training.fine_tune_from:
    if use_cache:  # phase one read unshuffled pixels; the backbone now changes every step
      datasets = _pixel_datasets(fn_args, tf_transform_output, model_config, training,
                                 shuffle_train=True)
    phase_two = fine_tune(model, backbone, datasets['train'], datasets['eval'], num_classes,
                          training, fn_args)
    history, fine_tune_start = merge_histories(history, phase_two.history), training.epochs

  _save_history(history, fn_args.model_run_dir, fine_tune_start)
  export.export_serving_model(model, tf_transform_output, class_names,
                              model_config.image_size, fn_args.serving_model_dir,
                              ServingLimits(**settings['serving']))
  export_config = ExportConfig(**settings.get('export', {}))
  if export_config.tflite:
    _export_tflite(model, datasets, class_names, model_config.image_size, export_config,
                   fn_args.serving_model_dir)


def _export_tflite(model: keras.Model, datasets: Dict[str, tf.data.Dataset],
                   class_names: List[str], image_size: int, export_config: ExportConfig,
                   export_dir: str) -> None:
  """model.tflite beside the SavedModel, checked against it on the eval split."""
  from trainer import tflite_export  # pylint: disable=g-import-not-at-top
  check = tflite_export.write_tflite(
      model, class_names, image_size, export_config.tflite_quantization,
      (x.numpy() for x, _ in datasets['train']), (x.numpy() for x, _ in datasets['eval']),
      export_dir, export_config.tflite_representative_images)
  logging.warning('TFLite: %s', tflite_export.describe(check))
