"""Phase two: unfreezing from a layer changes exactly those layers; BatchNorm stays put."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from tfx import v1 as tfx

from tools import preflight
from pipeline.configs import ConfigError, ModelConfig, ServingConfig, TrainingConfig, load_config
from trainer import eval_predictions, model as model_lib
from contract.settings import ExportConfig, trainer_custom_config
from trainer import task

MODEL = ModelConfig(weights='none', image_size=75, cut_layer='mixed1', dense_units=8)
TRAINING = TrainingConfig(epochs=2, batch_size=4, augment=False, fine_tune_from='mixed0',
                          fine_tune_epochs=1)


def _datasets(n=4, seed=0):
  rng = np.random.default_rng(seed)
  pixels = rng.uniform(0, 255, (n, 75, 75, 3)).astype(np.float32)
  labels = (np.arange(n) % 2).astype(np.float32).reshape(-1, 1)
  data = tf.data.Dataset.from_tensor_slices((pixels, labels)).batch(4)
  return {'train': data, 'eval': data}


def _weights(backbone):
  return {layer.name: [w.copy() for w in layer.get_weights()] for layer in backbone.layers}


@pytest.fixture(scope='module')
def run_both_phases(tmp_path_factory):
  """Runs the real run_fn once (fake datasets/Transform/export); snapshots phase two."""
  tmp_path = tmp_path_factory.mktemp('fine_tune')
  seen = {'shuffles': []}
  real_fine_tune = task.fine_tune

  def pixel_datasets(fn_args, tft_output, model_config, training, shuffle_train, **unused):
    seen['shuffles'].append(shuffle_train)
    return _datasets()

  def fine_tune(model, backbone, *args):
    seen['before'], seen['backbone'] = _weights(backbone), backbone
    seen['history'] = real_fine_tune(model, backbone, *args)
    seen['after'], seen['model'] = _weights(backbone), model
    return seen['history']

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(task, '_pixel_datasets', pixel_datasets)
    patch.setattr(task, 'fine_tune', fine_tune)
    patch.setattr(task, 'eval_keys', lambda *a: tf.data.Dataset.range(4).batch(4))
    patch.setattr(task.tft, 'TFTransformOutput', lambda path: None)
    patch.setattr(task.preprocessing, 'class_names', lambda tft_output: ['a', 'b'])
    patch.setattr(task.export, 'export_serving_model', lambda m, *a: seen.update(exported=m))
    task.run_fn(tfx.components.FnArgs(
        custom_config=trainer_custom_config(MODEL, TRAINING, ServingConfig(), ExportConfig()),
        model_run_dir=str(tmp_path / 'model_run'), serving_model_dir=str(tmp_path / 'serving'),
        transform_output='unused', train_files=[], eval_files=[], train_steps=None,
        eval_steps=None))
  seen['run_dir'] = tmp_path / 'model_run'
  return seen


def test_phase_two_changes_exactly_the_unfrozen_layers(run_both_phases):
  seen = run_both_phases
  backbone, before, after = seen['backbone'], seen['before'], seen['after']
  start = [layer.name for layer in backbone.layers].index('mixed0')
  expected = {layer.name for layer in backbone.layers[start:]
              if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)}
  assert expected and all(name.startswith('conv2d') for name in expected)
  changed = {name for name in before
             if any(not np.array_equal(b, a) for b, a in zip(before[name], after[name]))}
  assert changed == expected  # every other backbone weight is bit-identical
  assert {layer.name for layer in backbone.layers if layer.trainable_weights} == expected
  batch_norms = [l for l in backbone.layers if isinstance(l, keras.layers.BatchNormalization)]
  assert batch_norms and all(not bn.trainable for bn in batch_norms)
  for bn in batch_norms:  # moving mean/variance (and beta) unchanged
    for b, a in zip(before[bn.name], after[bn.name]):
      np.testing.assert_array_equal(b, a)
  assert seen['model'].optimizer.learning_rate.numpy() == pytest.approx(1e-5)
  assert seen['exported'] is seen['model']


def test_run_fn_continues_the_curves_across_both_phases(run_both_phases):
  seen = run_both_phases
  assert seen['history'].epoch == [2]  # initial_epoch=epochs
  history = json.loads((seen['run_dir'] / 'history.json').read_text())
  assert {len(v) for v in history.values()} == {3} and 'val_accuracy' in history
  assert history['loss'][2] == pytest.approx(seen['history'].history['loss'][0])
  # each phase decays its own rate along a half cosine: 1e-4, 5e-5, then 1e-5 again
  assert history['lr'] == pytest.approx([1e-4, 5e-5, 1e-5])
  assert (seen['run_dir'] / 'training_curves.png').stat().st_size > 1000
  assert seen['shuffles'] == [False, True]  # cached phase one, shuffled pixels for phase two


def test_unfreeze_from_checks_the_name_and_keeps_batch_norm_frozen():
  backbone = model_lib.build_backbone(MODEL)
  for name in ('mixed77', 'mixed5'):  # mixed5 exists in InceptionV3 but after the cut
    with pytest.raises(model_lib.ModelConfigError,
                       match=rf"'{name}'.*mixed0, mixed1 .*before the cut layer"):
      model_lib.unfreeze_from(backbone, name)
  assert not backbone.trainable_weights
  unfrozen = model_lib.unfreeze_from(backbone, 'mixed0')
  names = [layer.name for layer in backbone.layers]
  assert unfrozen and all(names.index(n) > names.index('mixed0') for n in unfrozen)
  assert all(isinstance(backbone.get_layer(n), keras.layers.Conv2D) for n in unfrozen)
  assert all(not layer.trainable for layer in backbone.layers[:names.index('mixed0')])
  assert {w.name for w in backbone.trainable_weights} == {
      w.name for n in unfrozen for w in backbone.get_layer(n).weights}


def test_preflight_rejects_unknown_fine_tune_layer(class_folder):
  config = load_config(overrides={
      'data.path': str(class_folder), 'model.weights': 'none', 'model.image_size': 75,
      'model.cut_layer': 'mixed1',
      'training.fine_tune_from': 'mixed6', 'training.fine_tune_epochs': 2}).validate()
  with pytest.raises(model_lib.ModelConfigError, match="fine_tune_from layer 'mixed6'"):
    preflight.check(config)


@pytest.mark.parametrize('overrides, field', [
    ({'training.fine_tune_from': 'mixed6'}, 'training.fine_tune_epochs'),
    ({'training.fine_tune_epochs': 3}, 'training.fine_tune_from'),
    ({'training.fine_tune_epochs': -1}, 'training.fine_tune_epochs'),
    ({'training.fine_tune_from': 'mixed6', 'training.fine_tune_epochs': 2,
      'training.fine_tune_learning_rate': 0}, 'training.fine_tune_learning_rate'),
])
def test_fine_tuning_config_validation(overrides, field):
  config = load_config(overrides={'data.path': '/data', **overrides})
  with pytest.raises(ConfigError, match=field):
    config.validate()


def test_fine_tuning_is_off_by_default_and_loads_from_yaml(tmp_path):
  assert (TrainingConfig().fine_tune_from, TrainingConfig().fine_tune_epochs) == ('', 0)
  assert TrainingConfig().fine_tune_learning_rate == 1e-5
  path = tmp_path / 'c.yaml'
  path.write_text('data: {path: /d}\ntraining: {fine_tune_from: mixed6, fine_tune_epochs: 10, '
                  'fine_tune_learning_rate: 0.00001}\n')
  training = load_config(str(path)).validate().training
  assert (training.fine_tune_from, training.fine_tune_epochs) == ('mixed6', 10)


def test_eval_predictions_come_from_the_fine_tuned_model(run_both_phases):
  seen = run_both_phases
  written = eval_predictions.load(str(seen['run_dir']))
  pixels = next(iter(_datasets()['eval']))[0]
  expected = eval_predictions.as_class_probabilities(seen['model'](pixels, training=False).numpy())
  assert sorted(written.by_key) == [0, 1, 2, 3] and written.image_size == 75
  for key in range(4):
    np.testing.assert_allclose(written.by_key[key][1], expected[key], atol=1e-6)
