"""Hyperparameter search for the head: `tuner_fn` for TFX's Tuner component.

The backbone is frozen and augmentation is off, so the cut layer's features are
computed once (a float32 tf.data cache file, its size checked against the free space
first, as the Trainer's) and every trial trains only a head on them: `trials: 10` costs
about one feature pass plus ten head trainings. Trials are scored on a validation part carved
from the train split by content hash (`tuning.validation_percent`), never on the eval
split that the Evaluator blesses on, so a lucky trial cannot buy a blessing. The space (`tuning:` in the config): dense units, dropout, learning rate,
pooling. The Trainer reads the best trial's values (`apply_hyperparameters`).
"""

import dataclasses
import os
import time
from typing import Any, Dict, Tuple

import keras_tuner as kt
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx

from contract.settings import ModelConfig, TrainingConfig, TuningConfig
from trainer import (artifact_io, cache_space, model as model_lib, preprocessing, task,
                     view_cache)

OBJECTIVE = 'val_accuracy'
SECONDS_KEY = 'trial_seconds'  # added to each trial's values: the report lists it
MODEL_KEYS = ('dense_units', 'dropout', 'pooling')


def build_head_fn(feature_shape: Tuple[int, ...], num_classes: int, model_config: ModelConfig,
                  tuning: TuningConfig):
  """keras-tuner's hypermodel: a compiled head for the hyperparameters `hp`."""

  def build(hp: kt.HyperParameters):
    config = dataclasses.replace(
        model_config, dense_units=hp.Choice('dense_units', tuning.dense_units),
        dropout=_range(hp, 'dropout', tuning.dropout),
        pooling=hp.Choice('pooling', tuning.pooling))
    head = model_lib.build_head(feature_shape, num_classes, config)
    model_lib.compile_model(head, num_classes,
                            _range(hp, 'learning_rate', tuning.learning_rate, 'log'),
                            jit_compile=True)
    return head

  return build


def _range(hp: kt.HyperParameters, name: str, bounds, sampling: str = 'linear') -> float:
  low, high = bounds
  return hp.Fixed(name, low) if low == high else hp.Float(name, low, high, sampling=sampling)


class _Timed:
  """Records each trial's wall time among its values (TFX writes them to tuner_results),
  and deletes the search's files when it ends.

  TFX reads the results from the tuner in memory after `search`; its working folder is
  not removed on Kubeflow (a `.temp` folder in the bucket), so the cached features and
  the trials' checkpoints are removed here, where they were written."""
  cleanup_dirs: Tuple[str, ...] = ()

  def run_trial(self, trial, *args, **kwargs):
    start = time.perf_counter()
    result = super().run_trial(trial, *args, **kwargs)
    trial.hyperparameters.values[SECONDS_KEY] = round(time.perf_counter() - start, 2)
    return result

  def search(self, *args, **kwargs):
    try:
      return super().search(*args, **kwargs)
    finally:
      for folder in self.cleanup_dirs:
        artifact_io.remove_dir(folder)


class TimedRandomSearch(_Timed, kt.RandomSearch):
  pass


class TimedBayesianOptimization(_Timed, kt.BayesianOptimization):
  pass


TUNERS = {'random': TimedRandomSearch, 'bayesian': TimedBayesianOptimization}


class DecayedLearningRate(keras.callbacks.Callback):
  """`training.learning_rate_decay` over a trial's epochs, from the learning rate the
  trial compiled its head with, as the Trainer decays the rate the Tuner picks (each
  epoch's rate is logged as `lr`)."""

  def __init__(self, decay: str, epochs: int):
    super().__init__()
    self._decay, self._epochs, self._rate = decay, epochs, None

  def on_train_begin(self, logs=None):
    base = float(keras.backend.get_value(self.model.optimizer.learning_rate))
    self._rate = model_lib.learning_rate_schedule(base, self._decay, 0, self._epochs)

  def on_epoch_begin(self, epoch, logs=None):
    keras.backend.set_value(self.model.optimizer.learning_rate, self._rate(epoch))

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs['lr'] = self._rate(epoch)


def held_out(keys: tf.Tensor, validation_percent: int) -> tf.Tensor:
  """True for the images of the Tuner's validation part: content hash mod 100 < percent."""
  return tf.math.floormod(keys, 100) < validation_percent


def feature_datasets(fn_args: tfx.components.FnArgs, model_config: ModelConfig,
                     training: TrainingConfig, tuning: TuningConfig,
                     cache_dir: str) -> Dict[str, tf.data.Dataset]:
  """'train' (shuffled per epoch) and 'validation' batches of cached backbone features,
  both from the train split: an image is in 'validation' when the hash of its transformed
  pixels (`augment.image_keys`) mod 100 is under `tuning.validation_percent`, the same
  images in every run. The eval split, on which the Evaluator blesses, is never read."""
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  extractor = model_lib.feature_extractor(model_lib.build_backbone(model_config))
  shape = tuple(extractor.output_shape[1:])
  cache_space.check_fits(
      cache_space.CacheEstimate(1, cache_space.count_records(fn_args.train_files),
                                view_cache.record_bytes(shape, tf.float32), 0, 0),
      cache_dir, 'the Tuner caches the train split\'s float32 features once: free space '
      'there, or leave the Tuner out (tuning.enabled: false)')
  tf.io.gfile.makedirs(cache_dir)
  pixels = task.input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output,
                         model_config.image_size, training, shuffle=False, augment=False,
                         keep_keys=True, raw_examples=task.reads_raw_examples(fn_args))
  features = pixels.map(lambda x, y, keys: (extractor(x, training=False), y, keys)).unbatch()
  features = features.cache(os.path.join(cache_dir, 'train'))
  task.write_cache(features.map(lambda f, y, keys: (f, y)), training.batch_size,
                   'Feature pass (train, Tuner)')
  validation_count, total = (int(n) for n in features.reduce(
      (0, 0), lambda counts, element: (counts[0] + tf.cast(
          held_out(element[2], tuning.validation_percent), tf.int32), counts[1] + 1)))
  if not 0 < validation_count < total:
    raise ValueError(
        f'tuning.validation_percent={tuning.validation_percent} puts {validation_count} of '
        f'the {total} train images into the Tuner\'s validation part: both parts need images.')

  def part(validation: bool) -> tf.data.Dataset:
    chosen = features.filter(
        lambda f, y, keys: tf.equal(held_out(keys, tuning.validation_percent), validation))
    chosen = chosen.map(lambda f, y, keys: (tf.cast(f, tf.float32), y))
    if not validation:  # the Trainer's shuffle buffer, bounded by bytes
      chosen = chosen.shuffle(view_cache.shuffle_buffer(shape, tf.float32), seed=training.seed,
                              reshuffle_each_iteration=True)
    return chosen.batch(training.batch_size).prefetch(tf.data.AUTOTUNE)

  return {'train': part(False), 'validation': part(True)}


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
  """The Tuner component's entry point (custom_config as the Trainer's, plus 'tuning')."""
  settings = fn_args.custom_config
  model_config = ModelConfig(**settings['model'])
  training = TrainingConfig(**settings['training'])
  tuning = TuningConfig(**settings['tuning'])
  num_classes = len(preprocessing.class_names(tft.TFTransformOutput(fn_args.transform_graph_path)))
  keras.utils.set_random_seed(training.seed)
  cache_dir = os.path.join(fn_args.working_dir, 'feature_cache')
  datasets = feature_datasets(fn_args, model_config, training, tuning, cache_dir)
  feature_shape = tuple(datasets['train'].element_spec[0].shape[1:])
  tuner = TUNERS[tuning.algorithm](
      build_head_fn(feature_shape, num_classes, model_config, tuning),
      objective=kt.Objective(OBJECTIVE, 'max'), max_trials=tuning.trials,
      seed=training.seed, directory=fn_args.working_dir, project_name='head_search',
      overwrite=True)
  tuner.cleanup_dirs = (cache_dir, tuner.project_dir)
  epochs = tuning.epochs or training.epochs
  return tfx.components.TunerFnResult(tuner=tuner, fit_kwargs={
      'x': datasets['train'], 'validation_data': datasets['validation'], 'epochs': epochs,
      'callbacks': [DecayedLearningRate(training.learning_rate_decay, epochs)], 'verbose': 2})


def apply_hyperparameters(hyperparameters: Dict[str, Any], model_config: ModelConfig,
                          training: TrainingConfig) -> Tuple[ModelConfig, TrainingConfig]:
  """The Tuner's best values (a keras-tuner HyperParameters config) over the config."""
  values = hyperparameters.get('values', {})
  model_config = dataclasses.replace(
      model_config, **{k: values[k] for k in MODEL_KEYS if k in values})
  if 'learning_rate' in values:
    training = dataclasses.replace(training, learning_rate=float(values['learning_rate']))
  return model_config, training
