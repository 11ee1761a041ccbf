"""Trainer entry point: `run_fn` (referenced by dotted path from the pipeline)."""

import json
import logging
import os
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

import console
from contract.features import IMAGE_KEY, LABEL_KEY
from contract.settings import ExportConfig, ModelConfig, ServingConfig, TrainingConfig
from trainer import artifact_io, augment as augment_lib, eval_predictions, export
from trainer import cache_space, model as model_lib, plots, preprocessing, view_cache
from trainer import warm_start
from trainer.epoch_lines import EpochLines
from trainer.preprocessing import bytes_to_pixels


# Memory held by the raw-pixel shuffle of the training split (TFXIO's default is a count,
# 10,000 examples: 0.7 GB at 150 px, 2.7 GB at 299 px).
PIXEL_SHUFFLE_BYTES = 256 * 2**20
EXAMPLE_SIZE_SAMPLE = 256  # raw examples read to estimate their mean size


def mean_example_bytes(file_pattern: List[str], sample: int = EXAMPLE_SIZE_SAMPLE) -> int:
  """Mean serialized size of the first `sample` examples of the TFRecord files of
  `file_pattern`: encoded images vary with their format and size."""
  sizes = []
  for records in cache_space.record_files(file_pattern):
    sizes += [len(r) for r in records.take(sample - len(sizes)).as_numpy_iterator()]
    if len(sizes) >= sample:
      break
  return max(1, int(np.mean(sizes))) if sizes else 1


def pixel_shuffle_buffer(file_pattern: List[str], image_size: int, raw_examples: bool,
                         budget: int = PIXEL_SHUFFLE_BYTES) -> int:
  """Examples the training split's shuffle holds: `budget` bytes of serialized examples.
  Transformed examples are raw RGB plus ~100 bytes of proto (3,970 at 150 px, 1,000 at
  299 px); ExampleGen's (a training window) hold encoded images: their sampled mean."""
  example_bytes = (mean_example_bytes(file_pattern) if raw_examples
                   else 3 * image_size * image_size + 100)
  return max(1, budget // example_bytes)


def input_fn(file_pattern: List[str], data_accessor: tfx.components.DataAccessor,
             tf_transform_output: tft.TFTransformOutput, image_size: int,
             training: TrainingConfig, shuffle: bool, augment: bool,
             keep_keys: bool = False, raw_examples: bool = False) -> tf.data.Dataset:
  """Batches of (float pixels [B, H, W, 3] in 0..255, float label [B, 1]), one pass;
  with `keep_keys`, (pixels, label, image key [B]) for `augment.augment`.

  `raw_examples`: the files hold ExampleGen's examples (a training window of several
  spans, which Transform does not materialize): the Transform graph is applied here.
  Augmented batches draw a new seeded augmentation of every image each epoch."""
  metadata = (tf_transform_output.raw_metadata if raw_examples
              else tf_transform_output.transformed_metadata)
  buffer = pixel_shuffle_buffer(file_pattern, image_size, raw_examples) if shuffle else 1
  dataset = data_accessor.tf_dataset_factory(
      file_pattern,
      tfxio.TensorFlowDatasetOptions(batch_size=training.batch_size, label_key=LABEL_KEY,
                                     num_epochs=1, shuffle=shuffle, shuffle_buffer_size=buffer,
                                     shuffle_seed=training.seed if shuffle else None),
      metadata.schema)
  if raw_examples:
    transform_layer = tf_transform_output.transform_features_layer()
    dataset = dataset.map(
        lambda features, label: (transform_layer({IMAGE_KEY: features[IMAGE_KEY]}), label),
        num_parallel_calls=tf.data.AUTOTUNE)

  def to_pixels(features, label):
    data = features[IMAGE_KEY]
    return (bytes_to_pixels(data, image_size), tf.reshape(label, [-1, 1]),
            augment_lib.image_keys(data))

  dataset = dataset.map(to_pixels, num_parallel_calls=tf.data.AUTOTUNE)
  if augment:  # one seeded draw per batch and epoch numbers the view of its images
    draws = tf.data.Dataset.random(seed=training.seed, rerandomize_each_iteration=True)
    dataset = tf.data.Dataset.zip(dataset, draws).map(
        lambda batch, draw: (augment_lib.augment(batch[0], batch[2], draw, training.seed),
                             batch[1], batch[2]),
        num_parallel_calls=tf.data.AUTOTUNE)
  if not keep_keys:
    dataset = dataset.map(lambda x, y, keys: (x, y))
  return dataset.prefetch(tf.data.AUTOTUNE)


def reads_raw_examples(fn_args: tfx.components.FnArgs) -> bool:
  """The pipeline passes ExampleGen's examples (a training window), not Transform's."""
  return bool((fn_args.custom_config or {}).get('raw_examples'))


def write_cache(features: tf.data.Dataset, batch_size: int, label: str) -> None:
  """The Tuner's feature pass: reads `features` (a cached dataset) to the end once, which
  writes its cache file, with a progress bar (or periodic lines) on the console."""
  with console.Progress(label=label, unit='images') as bar:
    for _, labels in features.batch(batch_size).prefetch(tf.data.AUTOTUNE):
      bar.update(int(tf.shape(labels)[0]))


def write_feature_cache(dataset: tf.data.Dataset, extractor: keras.Model, cache_dir: str,
                        label: str, in_order: bool = False,
                        examples: Optional[int] = None) -> view_cache.ViewCache:
  """The feature pass: (pixels, label) batches -> their features in sharded files under
  `cache_dir`, stored as the extractor computes them (bfloat16 features stay compact),
  with a progress bar (or periodic lines) on the console."""
  with console.Progress(label=label, unit='images') as bar:
    return view_cache.write_views(dataset, extractor, 1, cache_dir, seed=0,
                                  dtype=tf.as_dtype(extractor.output.dtype),
                                  progress=lambda done: bar.update(done - bar.done),
                                  augmented=False, in_order=in_order, examples=examples)


def cached_features(dataset: tf.data.Dataset, extractor: keras.Model, cache_dir: str,
                    batch_size: int, shuffle_seed=None,
                    examples: Optional[int] = None) -> tf.data.Dataset:
  """(pixels, label) batches -> (features, label) batches; the features are computed
  now, once, and streamed to `cache_dir`; every epoch reads them back: in order, or
  with `shuffle_seed` reshuffled every epoch (shard order and buffer)."""
  cache = write_feature_cache(dataset, extractor, cache_dir,
                              f'Feature pass ({os.path.basename(cache_dir)})',
                              in_order=shuffle_seed is None, examples=examples)
  if shuffle_seed is None:
    return view_cache.in_order_batches(cache, batch_size)
  return view_cache.shuffled_batches(cache, batch_size, shuffle_seed)


def _pixel_datasets(fn_args: tfx.components.FnArgs, tf_transform_output: tft.TFTransformOutput,
                    model_config: ModelConfig, training: TrainingConfig, shuffle_train: bool,
                    augment_train: bool, keep_keys: bool = False) -> Dict[str, tf.data.Dataset]:
  """'train' (augmented on the fly when `augment_train`) and 'eval' pixel datasets."""
  return {
      split: input_fn(files, fn_args.data_accessor, tf_transform_output,
                      model_config.image_size, training,
                      shuffle=(split == 'train' and shuffle_train),
                      augment=(split == 'train' and augment_train),
                      keep_keys=(split == 'train' and keep_keys),
                      raw_examples=reads_raw_examples(fn_args))
      for split, files in (('train', fn_args.train_files), ('eval', fn_args.eval_files))}


def _fit(model: keras.Model, train: tf.data.Dataset, evaluation: tf.data.Dataset,
         fn_args: tfx.components.FnArgs, learning_rate: float, decay: str, epochs: int,
         initial_epoch: int = 0, steps_per_epoch: Optional[int] = None
         ) -> keras.callbacks.History:
  """Epochs `initial_epoch` .. `epochs - 1` at `learning_rate`, decayed as `decay` says
  over these epochs (each epoch's rate is logged as `lr`)."""
  schedule = model_lib.learning_rate_schedule(learning_rate, decay, initial_epoch, epochs)
  return model.fit(
      train, epochs=epochs, initial_epoch=initial_epoch, validation_data=evaluation,
      steps_per_epoch=steps_per_epoch or fn_args.train_steps,
      validation_steps=fn_args.eval_steps,
      callbacks=[keras.callbacks.LearningRateScheduler(schedule),
                 keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir), EpochLines()],
      verbose=0)


def uses_view_cache(training: TrainingConfig) -> bool:
  """Augmented training through the feature cache (K augmented views per image)."""
  return training.feature_cache and training.augment


def cached_views(pixels: tf.data.Dataset, extractor: keras.Model, cache_dir: str,
                 training: TrainingConfig, dtype: tf.DType = tf.float32,
                 examples: Optional[int] = None) -> Tuple[tf.data.Dataset, int]:
  """(pixels, label, key) batches -> (feature batches of one augmented view per image
  and epoch, steps per epoch); min(augmented_views, epochs) views computed once."""
  views = min(training.augmented_views, training.epochs)
  with console.Progress(label=f'Feature pass (train, {views} augmented view'
                        f'{"s" if views != 1 else ""})', unit='images') as bar:
    cache = view_cache.write_views(pixels, extractor, views, cache_dir, training.seed, dtype,
                                   progress=lambda done: bar.update(done - bar.done),
                                   examples=examples)
  logging.info('Cached %d views of %d training images.', cache.views, cache.examples)
  batches = view_cache.epoch_batches(cache, training.epochs, training.batch_size, training.seed)
  return batches, view_cache.steps_per_epoch(cache, training.batch_size)


def cache_estimate(fn_args: tfx.components.FnArgs, feature_shape: Tuple[int, ...],
                   training: TrainingConfig, train_dtype: tf.DType) -> cache_space.CacheEstimate:
  """The feature cache's size, from the splits' example counts (one read of each)."""
  views = min(training.augmented_views, training.epochs) if uses_view_cache(training) else 1
  return cache_space.CacheEstimate(
      views, cache_space.count_records(fn_args.train_files),
      view_cache.record_bytes(feature_shape, train_dtype),
      cache_space.count_records(fn_args.eval_files),
      view_cache.record_bytes(feature_shape, tf.float32))


def shrink_hint(model_config: ModelConfig, training: TrainingConfig, precision: str) -> str:
  """The settings that make the feature cache smaller, with their current values."""
  hints = []
  views = min(training.augmented_views, training.epochs)
  if uses_view_cache(training) and views > 1:
    hints.append(f'fewer views (training.augmented_views below {views})')
  if precision != 'bfloat16':
    hints.append('bfloat16 features (model.feature_precision: bfloat16, half the size)')
  if model_config.pooling != 'average':
    hints.append('pooled features (model.pooling: average, one value per channel)')
  hints.append('or more free space')
  return 'it shrinks with ' + ', '.join(hints)


def pooled_for_cache(extractor: keras.Model, head: keras.Model,
                     model_config: ModelConfig) -> Tuple[keras.Model, keras.Model]:
  """With `model.pooling: average`, the cache holds pooled features (one value per
  channel) and the head trains from its pooling layer on: the same weights, a cache as
  many times smaller as the feature map has positions. Else (extractor, head)."""
  if model_config.pooling != 'average':
    return extractor, head
  pool = head.layers[1]
  pooled = keras.Model(extractor.input, pool(extractor.output), name=f'{extractor.name}_pooled')
  return pooled, keras.Model(pool.output, head.output, name='head_after_pooling')


def _train_head(model: keras.Model, backbone: keras.Model, head: keras.Model,
                datasets: Dict[str, tf.data.Dataset], num_classes: int,
                training: TrainingConfig, fn_args: tfx.components.FnArgs,
                feature_precision: str = 'float32',
                model_config: Optional[ModelConfig] = None) -> keras.callbacks.History:
  """Phase one: the head on the frozen backbone, through the feature cache or not.

  `feature_precision` 'bfloat16' computes and stores the training features in bfloat16;
  eval features stay float32, so validation and the eval predictions are the exported
  float32 model's. Refuses (CacheSpaceError) before the feature pass when the cache
  would not fit on its disk."""
  model_config = model_config or ModelConfig()
  if not training.feature_cache:
    logging.info('Feature cache OFF (training.feature_cache=false): the full model runs '
                    'every epoch.')
    model_lib.compile_model(model, num_classes, training.learning_rate)
    return _fit(model, datasets['train'], datasets['eval'], fn_args, training.learning_rate,
                training.learning_rate_decay, training.epochs)
  logging.info('Feature cache ON: the backbone is frozen, so its features are computed '
                  'once (%s; training features in %s) and the head trains on them.',
                  f'{training.augmented_views} augmented views' if training.augment
                  else 'augmentation off', feature_precision)
  cache_dir = os.path.join(fn_args.model_run_dir, 'feature_cache')
  extractor, trained = pooled_for_cache(model_lib.feature_extractor(backbone), head,
                                        model_config)
  train_extractor, _ = pooled_for_cache(
      model_lib.feature_extractor(backbone, feature_precision), head, model_config)
  estimate = cache_estimate(fn_args, tuple(extractor.output_shape[1:]), training,
                            tf.dtypes.as_dtype(feature_precision))
  cache_space.check_fits(estimate, cache_dir,
                         shrink_hint(model_config, training, feature_precision))
  tf.io.gfile.makedirs(cache_dir)
  try:
    if uses_view_cache(training):
      train, steps = cached_views(datasets['train'], train_extractor,
                                  os.path.join(cache_dir, 'train_views'), training,
                                  tf.dtypes.as_dtype(feature_precision),
                                  estimate.train_examples)
    else:
      train = cached_features(datasets['train'], train_extractor,
                              os.path.join(cache_dir, 'train'), training.batch_size,
                              shuffle_seed=training.seed, examples=estimate.train_examples)
      steps = None
    evaluation = cached_features(datasets['eval'], extractor, os.path.join(cache_dir, 'eval'),
                                 training.batch_size)
    model_lib.compile_model(trained, num_classes, training.learning_rate, jit_compile=True)
    history = _fit(trained, train, evaluation, fn_args, training.learning_rate,
                   training.learning_rate_decay, training.epochs, steps_per_epoch=steps)
    if not training.fine_tune_from:  # the final model: the head on these eval features
      _write_eval_predictions(trained, evaluation, datasets['eval_keys'],
                              backbone.input_shape[1], fn_args)
    return history
  finally:  # the cache can be large: never leave it in the ModelRun artifact (or bucket)
    artifact_io.remove_dir(cache_dir)


def eval_keys(fn_args: tfx.components.FnArgs, tf_transform_output: tft.TFTransformOutput,
              model_config: ModelConfig, training: TrainingConfig) -> tf.data.Dataset:
  """[B] image keys of the eval split, in the order of the 'eval' pixel dataset."""
  keyed = input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output,
                   model_config.image_size, training, shuffle=False, augment=False,
                   keep_keys=True, raw_examples=reads_raw_examples(fn_args))
  return keyed.map(lambda pixels, label, keys: keys)


def _write_eval_predictions(model: keras.Model, evaluation: tf.data.Dataset,
                            keys: tf.data.Dataset, image_size: int,
                            fn_args: tfx.components.FnArgs) -> None:
  """The final model's eval predictions, for the EvaluationReport (no third eval pass)."""
  predictions = eval_predictions.predict(model, evaluation, keys, image_size)
  path = eval_predictions.write(predictions, fn_args.model_run_dir)
  logging.info('Wrote %d eval predictions to %s.', len(predictions.by_key), path)


def fine_tune(model: keras.Model, backbone: keras.Model, train: tf.data.Dataset,
              evaluation: tf.data.Dataset, num_classes: int, training: TrainingConfig,
              fn_args: tfx.components.FnArgs) -> keras.callbacks.History:
  """Phase two: unfreezes `backbone` from `training.fine_tune_from` (BatchNorm stays
  frozen, in inference mode) and trains the assembled `model` on pixel batches at
  `training.fine_tune_learning_rate` (decayed as phase one), continuing the epoch count
  of phase one."""
  unfrozen = model_lib.unfreeze_from(backbone, training.fine_tune_from)
  logging.info('Fine-tuning: %d backbone layers with weights unfrozen from %s to %s '
                  '(BatchNorm stays frozen), learning rate %g, epochs %d-%d.',
                  len(unfrozen), training.fine_tune_from, backbone.layers[-1].name,
                  training.fine_tune_learning_rate, training.epochs + 1,
                  training.epochs + training.fine_tune_epochs)
  model_lib.compile_model(model, num_classes, training.fine_tune_learning_rate)
  return _fit(model, train, evaluation, fn_args, training.fine_tune_learning_rate,
              training.learning_rate_decay, epochs=training.epochs + training.fine_tune_epochs,
              initial_epoch=training.epochs)


def merge_histories(first: Dict[str, List[float]],
                    second: Dict[str, List[float]]) -> Dict[str, List[float]]:
  """Per-metric epoch lists of phase one followed by phase two."""
  return {key: list(first.get(key, [])) + list(second.get(key, []))
          for key in list(first) + [k for k in second if k not in first]}


def _save_history(history: Dict[str, List[float]], model_run_dir: str,
                  fine_tune_start: Optional[int]) -> None:
  history = {key: [float(value) for value in values] for key, values in history.items()}
  with tf.io.gfile.GFile(os.path.join(model_run_dir, 'history.json'), 'w') as f:
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
    logging.info('Hyperparameters from the Tuner: %s', fn_args.hyperparameters['values'])
  keras.utils.set_random_seed(training.seed)

  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  class_names = preprocessing.class_names(tf_transform_output)
  use_cache = training.feature_cache
  # The plain cache reads pixels in file order and shuffles features; the view cache
  # shuffles pixels (seeded) so that every view file is class-mixed.
  datasets = _pixel_datasets(fn_args, tf_transform_output, model_config, training,
                             shuffle_train=not use_cache or uses_view_cache(training),
                             augment_train=training.augment and not use_cache,
                             keep_keys=uses_view_cache(training))
  keys = eval_keys(fn_args, tf_transform_output, model_config, training)
  datasets['eval_keys'] = keys

  num_classes = len(class_names)
  backbone = model_lib.build_backbone(model_config)
  if training.fine_tune_from:  # an unknown layer fails before any training
    model_lib.fine_tune_start(backbone, training.fine_tune_from)
  head = model_lib.build_head(tuple(backbone.output_shape[1:]), num_classes, model_config)
  model = model_lib.assemble(backbone, head)
  logging.info('Training on %d classes %s, backbone weights: %s.', num_classes, class_names,
               model_config.weights)
  tf.io.gfile.makedirs(fn_args.model_run_dir)
  started = warm_start.warm_start(model, head, class_names, fn_args.base_model,
                                  training.warm_start)
  warm_start.log(started)
  warm_start.write_decision(started, fn_args.model_run_dir)
  training = warm_start.training_settings(started, training)
  history = _train_head(model, backbone, head, datasets, num_classes, training, fn_args,
                        model_lib.resolve_feature_precision(model_config.feature_precision),
                        model_config).history
  fine_tune_start = None
  if training.fine_tune_from:
    if use_cache:  # phase one read features; the backbone now changes every step
      datasets = _pixel_datasets(fn_args, tf_transform_output, model_config, training,
                                 shuffle_train=True, augment_train=training.augment)
      datasets['eval_keys'] = keys
    phase_two = fine_tune(model, backbone, datasets['train'], datasets['eval'], num_classes,
                          training, fn_args)
    history, fine_tune_start = merge_histories(history, phase_two.history), training.epochs
  if not use_cache or training.fine_tune_from:  # else written from the cached features
    _write_eval_predictions(model, datasets['eval'], datasets['eval_keys'],
                            model_config.image_size, fn_args)

  _save_history(history, fn_args.model_run_dir, fine_tune_start)
  export.export_serving_model(model, tf_transform_output, class_names,
                              model_config.image_size, fn_args.serving_model_dir,
                              ServingConfig(**settings['serving']))
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
      pixel_batches(datasets['train']), pixel_batches(datasets['eval']),
      export_dir, export_config.tflite_representative_images)
  logging.info('TFLite: %s', tflite_export.describe(check))


def pixel_batches(dataset: tf.data.Dataset) -> Iterator[np.ndarray]:
  """The pixel batches of a (pixels, label) or, with the view cache, (pixels, label, key)
  dataset."""
  for batch in dataset:
    yield batch[0].numpy()
