"""The Trainer and the Tuner with their artifacts on a remote filesystem.

TensorFlow's `ram://` filesystem stands in for `gs://` (Kubeflow, Vertex): the real
`run_fn` (the default training settings: augmentation and the view cache on, TFLite int8)
and the real `tuner_fn` search write their artifacts there, read the backbone weights
from there, leave nothing in the local working folder or the temp folder, and remove
their feature caches from where they were written.
"""

import json
import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.components.tuner import executor as tuner_executor
from tfx.types import standard_artifacts

from components.report import evaluation_report
from contract.features import IMAGE_KEY
from contract.settings import (ExportConfig, ModelConfig, ServingConfig, TrainingConfig,
                               TuningConfig, trainer_custom_config)
from tests.conftest import random_pixels
from tests.tiny_model import transform_output
from trainer import artifact_io, eval_predictions, model as model_lib, task, tflite_export
from trainer import tuning
from trainer.preprocessing import pixels_to_bytes

SIZE = 75
CLASS_NAMES = ['dark', 'bright']
# The default training settings, on tiny data and a small cut layer.
TRAINING = TrainingConfig(epochs=2, batch_size=4, seed=3)
EXPORT = ExportConfig(tflite=True, tflite_quantization='int8')


def _walk(root: str):
  """Every file under `root` (any filesystem), relative to it."""
  return sorted(os.path.relpath(os.path.join(folder, name), root)
                for folder, _, files in tf.io.gfile.walk(root) for name in files)


def _examples(split: str):
  """Transformed examples: dark images are class 0, bright ones class 1."""
  rng = np.random.default_rng(0 if split == 'train' else 1)
  count = 16 if split == 'train' else 8
  labels = np.arange(count) % 2
  pixels = rng.integers(0, 100, (count, SIZE, SIZE, 3)) + 150 * labels[:, None, None, None]
  return pixels_to_bytes(tf.constant(pixels, tf.uint8)), labels


def _data_accessor():
  """What TFX's DataAccessor gives `input_fn`: ({image: pixel bytes}, label) batches."""
  def tf_dataset_factory(files, options, schema):
    images, labels = _examples(files[0])
    dataset = tf.data.Dataset.from_tensor_slices(({IMAGE_KEY: images}, labels))
    if options.shuffle:
      dataset = dataset.shuffle(64, seed=options.shuffle_seed)
    return dataset.batch(options.batch_size)
  return tfx.components.DataAccessor(tf_dataset_factory=tf_dataset_factory,
                                     record_batch_factory=None, data_view_decode_fn=None)


@pytest.fixture(scope='module')
def local_dirs(tmp_path_factory):
  """An empty working folder and temp folder, and the Transform graph (an input)."""
  root = tmp_path_factory.mktemp('remote')
  dirs = {'cwd': root / 'cwd', 'tmp': root / 'tmp'}
  for folder in dirs.values():
    folder.mkdir()
  transform_output(str(root / 'inputs'), SIZE)
  dirs['transform'] = str(root / 'inputs' / 'transform')
  return dirs


@pytest.fixture(scope='module')
def weights_uri(tmp_path_factory):
  """Calibrated backbone weights on the remote filesystem only."""
  local = str(tmp_path_factory.mktemp('weights') / 'calibrated_notop.h5')
  model_lib.write_calibrated_weights(local, random_pixels((4, SIZE, SIZE, 3)))
  uri = 'ram://weights/calibrated_notop.h5'
  tf.io.gfile.makedirs('ram://weights')
  tf.io.gfile.copy(local, uri, overwrite=True)
  os.remove(local)
  return uri


def _assert_nothing_written_locally(dirs):
  """The working folder is empty; the temp folder holds only the modules TensorFlow's
  autograph generates for itself (no weights copy, no cache, no artifact file)."""
  assert os.listdir(dirs['cwd']) == []
  left = [n for n in os.listdir(dirs['tmp']) if not n.startswith('__autograph_generated_file')]
  assert left == [], left


def _isolated(patch, dirs):
  """The local working folder and temp folder are empty folders the test watches."""
  patch.chdir(dirs['cwd'])
  patch.setattr(tempfile, 'tempdir', str(dirs['tmp']))
  patch.setattr(task.preprocessing, 'class_names', lambda tft_output: CLASS_NAMES)


@pytest.fixture(scope='module')
def trained(local_dirs, weights_uri):
  """run_fn with its ModelRun and Model artifacts on ram://."""
  model_run = 'ram://pipeline_root/Trainer/model_run/1'
  serving = 'ram://pipeline_root/Trainer/model/1/Format-Serving'
  model_config = ModelConfig(weights=weights_uri, image_size=SIZE, cut_layer='mixed0',
                             dense_units=8)
  with pytest.MonkeyPatch.context() as patch:
    _isolated(patch, local_dirs)
    task.run_fn(tfx.components.FnArgs(
        custom_config=trainer_custom_config(model_config, TRAINING, ServingConfig(), EXPORT),
        model_run_dir=model_run, serving_model_dir=serving,
        transform_output=local_dirs['transform'], train_files=['train'], eval_files=['eval'],
        train_steps=None, eval_steps=None, data_accessor=_data_accessor()))
  return model_run, serving


def test_every_trainer_file_is_on_the_remote_filesystem(trained, local_dirs):
  model_run, serving = trained
  run_files = _walk(model_run)
  assert {'history.json', 'training_curves.png', eval_predictions.FILE_NAME} <= set(run_files)
  assert any('events.out.tfevents' in f for f in run_files), run_files  # TensorBoard
  serving_files = set(_walk(serving))
  assert {'saved_model.pb', tflite_export.TFLITE_FILE, tflite_export.CHECK_FILE,
          os.path.join('assets.extra', 'class_names.txt')} <= serving_files, serving_files
  _assert_nothing_written_locally(local_dirs)


def test_the_view_cache_is_removed_from_where_it_was_written(trained):
  model_run, _ = trained
  assert not [f for f in _walk(model_run) if 'cache' in f or 'view-' in f]
  assert not tf.io.gfile.exists(os.path.join(model_run, 'feature_cache'))


def test_int8_tflite_with_the_default_training_settings(trained):
  """Augmentation and the view cache on: the train batches carry image keys too."""
  _, serving = trained
  check = tflite_export.read_check(serving)
  assert check['quantization'] == 'int8' and check['representative_images'] == 16
  assert check['eval_split']['examples'] == 8
  assert check['eval_split']['top1_agreement'] >= 0.75, check
  classifier = tflite_export.TFLiteClassifier(os.path.join(serving, tflite_export.TFLITE_FILE))
  assert classifier.interpreter.get_input_details()[0]['dtype'] == np.uint8
  assert classifier.class_names == CLASS_NAMES  # read beside it, on ram://


def test_the_report_reads_the_remote_model_run(trained):
  model_run, serving = trained
  png = evaluation_report.training_curves(model_run)
  assert png and png.startswith(b'\x89PNG')
  history = json.loads(tf.io.gfile.GFile(os.path.join(model_run, 'history.json')).read())
  assert len(history['loss']) == TRAINING.epochs
  saved = eval_predictions.load(model_run)
  assert saved and len(saved.by_key) == 8
  assert tf.saved_model.load(serving).signatures['serving_default'] is not None


def test_weights_uri_is_read_through_a_temporary_local_copy(weights_uri, local_dirs, monkeypatch):
  """Keras reads HDF5 weights from local files only: the Trainer (above) loaded these
  from ram:// through a copy with the same bytes, deleted afterwards."""
  monkeypatch.setattr(tempfile, 'tempdir', str(local_dirs['tmp']))
  with artifact_io.local_copy(weights_uri) as local:
    assert not artifact_io.is_uri(local) and os.path.isfile(local)
    with open(local, 'rb') as f:
      assert f.read() == artifact_io.read_bytes(weights_uri)
  assert not os.path.exists(local)
  with pytest.raises(model_lib.ModelConfigError,
                     match=r'Weights file ram://weights/missing_notop\.h5 does not exist'):
    model_lib.build_backbone(ModelConfig(weights='ram://weights/missing_notop.h5',
                                         image_size=SIZE))


def test_tuner_writes_and_cleans_up_on_the_remote_filesystem(local_dirs, weights_uri):
  """tuner_fn and the search as TFX's Tuner executor runs them, working folder on ram://."""
  working_dir = 'ram://pipeline_root/Tuner/.temp/7/'
  model_config = ModelConfig(weights=weights_uri, image_size=SIZE, cut_layer='mixed0',
                             dense_units=8)
  training = TrainingConfig(epochs=1, batch_size=4, augment=False)
  search_space = TuningConfig(enabled=True, trials=2, dense_units=[4, 8])
  outputs = {'best_hyperparameters': [standard_artifacts.HyperParameters()],
             'tuner_results': [standard_artifacts.TunerResults()]}
  with pytest.MonkeyPatch.context() as patch:
    _isolated(patch, local_dirs)
    patch.setattr(tuning.preprocessing, 'class_names', lambda tft_output: CLASS_NAMES)
    fn_args = tfx.components.FnArgs(
        custom_config={**trainer_custom_config(model_config, training, ServingConfig(),
                                               ExportConfig()),
                       'tuning': search_space.__dict__},
        working_dir=working_dir, transform_graph_path=local_dirs['transform'],
        train_files=['train'], eval_files=['eval'], data_accessor=_data_accessor())
    result = tuning.tuner_fn(fn_args)
    assert tf.io.gfile.exists(os.path.join(working_dir, 'feature_cache'))
    result.tuner.search(**result.fit_kwargs)
    tuner = result.tuner
    for key, (artifact,) in outputs.items():
      artifact.uri = f'ram://pipeline_root/Tuner/{key}/7'
      tf.io.gfile.makedirs(artifact.uri)
    tuner_executor.write_best_hyperparameters(tuner, outputs)
  assert len(tuner.oracle.trials) == 2
  assert _walk(working_dir) == []  # cached features and trial checkpoints removed
  best = json.loads(tf.io.gfile.GFile(os.path.join(
      outputs['best_hyperparameters'][0].uri, 'best_hyperparameters.txt')).read())
  assert best['values']['dense_units'] in (4, 8)
  assert len(evaluation_report.load_trials(outputs['tuner_results'][0].uri)) == 2
  _assert_nothing_written_locally(local_dirs)
