"""Head hyperparameter search (TFX Tuner's tuner_fn) on cached features: tiny data, a
small cut layer, the real keras-tuner search and TFX's result writer."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from tfx import v1 as tfx
from tfx.components.tuner import executor as tuner_executor
from tfx.types import standard_artifacts

from components.report import evaluation_report, report_html
from pipeline.configs import (ConfigError, ModelConfig, ServingConfig, TrainingConfig, TuningConfig,
                              load_config)
from pipeline.definition import create_pipeline
from contract.settings import ExportConfig, trainer_custom_config
from trainer import augment, cache_space, model as model_lib, task, tuning

MODEL = ModelConfig(weights='none', image_size=75, cut_layer='mixed0', dense_units=8)
TRAINING = TrainingConfig(epochs=2, batch_size=4, augment=False)
TUNING = TuningConfig(enabled=True, trials=3, dense_units=[4, 8], dropout=[0.0, 0.3],
                      learning_rate=[1e-4, 1e-2], validation_percent=25)
IMAGES = 8  # per split
# Content-hash keys of the train images: with validation_percent 25, images 0 and 1 (one of
# each class) score the trials.
KEYS = np.array([1000, 13, 26, 39, 52, 65, 78, 91], dtype=np.int64)


def _pixels(split):
  """Dark images are class 0, bright ones class 1: learnable in a few steps."""
  rng = np.random.default_rng(0 if split == 'train' else 1)
  labels = (np.arange(IMAGES) % 2).astype(np.float32)
  pixels = rng.uniform(0, 100, (IMAGES, 75, 75, 3)) + 150 * labels[:, None, None, None]
  return pixels.astype(np.float32), labels.reshape(-1, 1)


@pytest.fixture(scope='module')
def searched(tmp_path_factory):
  """Runs tuner_fn and the search as TFX's Tuner executor does; counts pixel reads."""
  tmp = tmp_path_factory.mktemp('tuning')
  reads = tf.Variable(0, dtype=tf.int64)

  def input_fn(files, data_accessor, tft_output, image_size, training, shuffle, augment,
               keep_keys, raw_examples=False):
    assert tft_output == 'transform/'  # the Tuner's fn_args.transform_graph_path
    assert files == ['train'], 'the Tuner read the eval split the Evaluator blesses on'
    assert not shuffle and not augment and keep_keys
    pixels, labels = _pixels(files[0])

    def count(x, y, keys):
      reads.assign_add(tf.shape(x, out_type=tf.int64)[0])
      return x, y, keys
    return tf.data.Dataset.from_tensor_slices((pixels, labels, KEYS)).batch(4).map(count)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(task, 'input_fn', input_fn)
    patch.setattr(tuning.tft, 'TFTransformOutput', lambda path: path.replace('graph', ''))
    patch.setattr(tuning.preprocessing, 'class_names', lambda tft_output: ['dark', 'bright'])
    fn_args = tfx.components.FnArgs(
        custom_config={**trainer_custom_config(MODEL, TRAINING, ServingConfig(), ExportConfig()),
                       'tuning': TUNING.__dict__},
        working_dir=str(tmp / 'work'), transform_graph_path='transform/graph', train_files=['train'],
        eval_files=['eval'], data_accessor=None)
    result = tuning.tuner_fn(fn_args)
    result.tuner.search(**result.fit_kwargs)
  outputs = {'best_hyperparameters': [standard_artifacts.HyperParameters()],
             'tuner_results': [standard_artifacts.TunerResults()]}
  for key, (artifact,) in outputs.items():
    artifact.uri = str(tmp / key)
    os.makedirs(artifact.uri)
  tuner_executor.write_best_hyperparameters(result.tuner, outputs)
  return result.tuner, int(reads.numpy()), tmp


def test_trials_share_one_feature_pass(searched):
  tuner, reads, _ = searched
  trials = tuner.oracle.trials.values()
  assert len(trials) == TUNING.trials
  assert all(t.status == 'COMPLETED' for t in trials), [t.message for t in trials]
  # 3 trials x 2 epochs, yet every train image went through the backbone once.
  assert reads == IMAGES


def test_trials_are_scored_on_a_part_of_the_train_split_fixed_by_content(tmp_path):
  keys = tf.constant(KEYS)
  assert tuning.held_out(keys, 25).numpy().tolist() == [True, True] + [False] * 6
  # The same image (key) is in the same part whatever the order or the batch.
  shuffled = tf.constant(KEYS[::-1].copy())
  assert tuning.held_out(shuffled, 25).numpy().tolist() == [False] * 6 + [True, True]
  real_keys = augment.image_keys(tf.constant([b'pixels of one image', b'of another']))
  assert (tuning.held_out(real_keys, 50).numpy().tolist() ==
          tuning.held_out(real_keys[::-1], 50).numpy().tolist()[::-1])


def test_validation_part_must_hold_images(monkeypatch, tmp_path):
  """With too small a share (no key under it) the Tuner stops with one line naming the key."""
  monkeypatch.setattr(task, 'input_fn', lambda *a, **k: tf.data.Dataset.from_tensor_slices(
      (*_pixels('train'), np.full(IMAGES, 50, np.int64))).batch(4))  # no key mod 100 under 1
  monkeypatch.setattr(tuning.tft, 'TFTransformOutput', lambda path: path)
  fn_args = tfx.components.FnArgs(train_files=['train'], transform_graph_path='t',
                                  data_accessor=None)
  training = TrainingConfig(epochs=1, batch_size=4, augment=False)
  with pytest.raises(ValueError, match='tuning.validation_percent=1 puts 0 of the 8'):
    tuning.feature_datasets(fn_args, MODEL, training,
                            TuningConfig(enabled=True, validation_percent=1), str(tmp_path))


def test_the_tuner_refuses_a_cache_that_does_not_fit_before_its_feature_pass(monkeypatch,
                                                                          tmp_path):
  def never(*args, **kwargs):
    raise AssertionError('the feature pass started')

  monkeypatch.setattr(task, 'input_fn', never)
  monkeypatch.setattr(tuning.tft, 'TFTransformOutput', lambda path: path)
  monkeypatch.setattr(cache_space, 'count_records', lambda patterns: 1000)
  monkeypatch.setattr(cache_space, 'free_bytes', lambda path: 10**6)
  fn_args = tfx.components.FnArgs(train_files=['train'], transform_graph_path='t',
                                  data_accessor=None)
  with pytest.raises(cache_space.CacheSpaceError,
                     match=r'needs .* \(1 view x 1,000 train images x .*\) but .* has 1 MB '
                           r'free: the Tuner caches .* \(tuning.enabled: false\)'):
    tuning.feature_datasets(fn_args, MODEL, TRAINING, TUNING, str(tmp_path / 'cache'))


@pytest.mark.parametrize('decay', ['cosine', 'constant'])
def test_a_trial_decays_its_learning_rate_as_the_trainer_does(decay):
  head = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation='sigmoid')])
  head.compile(keras.optimizers.RMSprop(0.01), 'binary_crossentropy')
  history = head.fit(np.ones((8, 3)), np.ones((8, 1)), epochs=4, verbose=0,
                     callbacks=[tuning.DecayedLearningRate(decay, 4)])
  expected = [model_lib.learning_rate_schedule(0.01, decay, 0, 4)(e) for e in range(4)]
  np.testing.assert_allclose(history.history['lr'], expected, rtol=1e-6)
  assert float(head.optimizer.learning_rate.numpy()) == pytest.approx(expected[-1])
  assert (expected[-1] < 0.01) == (decay == 'cosine')


def test_trials_explore_the_configured_space(searched):
  tuner, _, _ = searched
  for trial in tuner.oracle.trials.values():
    values = trial.hyperparameters.values
    assert values['dense_units'] in TUNING.dense_units
    assert values['pooling'] in TUNING.pooling
    assert TUNING.dropout[0] <= values['dropout'] <= TUNING.dropout[1]
    assert TUNING.learning_rate[0] <= values['learning_rate'] <= TUNING.learning_rate[1]
    assert values[tuning.SECONDS_KEY] > 0
    assert 0.0 <= trial.score <= 1.0


def test_trainer_gets_the_best_trial_and_the_report_lists_all(searched):
  tuner, _, tmp = searched
  with open(tmp / 'best_hyperparameters' / 'best_hyperparameters.txt') as f:
    best = json.load(f)  # what the Trainer receives as fn_args.hyperparameters
  model_config, training = tuning.apply_hyperparameters(best, MODEL, TRAINING)
  values = tuner.oracle.get_best_trials(1)[0].hyperparameters.values
  assert (model_config.dense_units, model_config.dropout, model_config.pooling) == (
      values['dense_units'], values['dropout'], values['pooling'])
  assert training.learning_rate == pytest.approx(values['learning_rate'])
  assert model_config.cut_layer == MODEL.cut_layer and training.epochs == TRAINING.epochs
  trials = evaluation_report.load_trials(str(tmp / 'tuner_results'))
  assert len(trials) == TUNING.trials
  assert [t['score'] for t in trials] == sorted((t['score'] for t in trials), reverse=True)
  page = report_html.trials_table(trials, trials[0]['trial_id'])
  assert page.count('<td>chosen</td>') == 1
  assert page.index('<td>chosen</td>') < page.index(f'<td>{trials[1]["trial_id"]}</td>')
  assert 'val accuracy' in page and 'seconds' in page


def test_pipeline_wires_tuner_into_trainer_and_report(tmp_path):
  config = load_config(overrides={'data.path': str(tmp_path), 'training.augment': False,
                                  'tuning.enabled': True}).validate()
  components = {c.id: c for c in create_pipeline(config).components}
  tuner = components['Tuner']
  assert components['Trainer'].inputs['hyperparameters'] is tuner.outputs['best_hyperparameters']
  assert components['EvaluationReport'].inputs['tuner_results'] is tuner.outputs['tuner_results']
  assert tuner.exec_properties['tuner_fn'] == 'trainer.tuning.tuner_fn'
  config.tuning.enabled = False
  assert 'Tuner' not in {c.id for c in create_pipeline(config).components}


def test_tuning_needs_the_feature_cache_conditions():
  with pytest.raises(ConfigError, match='training.augment'):
    load_config(overrides={'data.path': 'x', 'tuning.enabled': True}).validate()
  with pytest.raises(ConfigError, match='tuning.dropout'):
    load_config(overrides={'data.path': 'x', 'tuning.enabled': True, 'training.augment': False,
                           'tuning.dropout': [0.5, 0.1]}).validate()
