"""SIGKILL during the Trainer, then run again: upstream work is reused, the result is the same."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from pipeline import local_runner
from tools import demo_data, run_summary as report
from tools.model_dir import resolve_model_dir
from tools.class_folder import load_class_folder
from pipeline.configs import load_config
from trainer.model import write_calibrated_weights

pytestmark = pytest.mark.slow
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UPSTREAM = ('ImageFolderExampleGen', 'StatisticsGen', 'CuratedSchemaGen', 'Transform')
_RUN = ('import json, sys\nfrom pipeline import local_runner\nfrom pipeline.configs import '
        'load_config\nlocal_runner.run(load_config(overrides=json.loads(sys.argv[1])))\n')


def _kill_when_training_starts(overrides, timeout=600):
  """Runs the pipeline in a child process and SIGKILLs it once the Trainer is fitting."""
  child = subprocess.Popen([sys.executable, '-c', _RUN, json.dumps(overrides)], cwd=PROJECT_ROOT,
                           env=dict(os.environ, TF_USE_LEGACY_KERAS='1'),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
  # Keras' TensorBoard callback writes its event file when fit() starts.
  events = os.path.join(overrides['output'], 'pipeline_root', 'Trainer', 'model_run', '*', '**',
                        'events.out.tfevents.*')
  deadline = time.time() + timeout
  while not glob.glob(events, recursive=True):
    assert child.poll() is None, f'the pipeline ended (code {child.returncode}) before training'
    assert time.time() < deadline, 'the Trainer did not start in time'
    time.sleep(0.2)
  os.killpg(child.pid, signal.SIGKILL)
  assert child.wait() == -signal.SIGKILL


def _probabilities(config, images):
  model_dir = resolve_model_dir(config.serving_model_dir)
  signature = tf.saved_model.load(model_dir).signatures['serving_image_bytes']
  return signature(image_bytes=tf.constant(images))['probabilities'].numpy()


@pytest.mark.parametrize('augment', [False, True], ids=['plain', 'augmented'])
def test_killed_run_resumes_from_cache_with_the_same_result(tmp_path, augment):
  """With augmentation on (the default: seeded views through the feature cache) the
  rerun also matches the uninterrupted run."""
  data = str(tmp_path / 'digits')
  demo_data.write_digits(data, (0, 1), per_class=40)
  weights = str(tmp_path / 'calibrated_notop.h5')
  write_calibrated_weights(weights, load_class_folder(data, 75, per_class=8).images)
  settings = {'data.path': data, 'model.weights': weights, 'model.image_size': 75,
              'training.epochs': 3, 'training.augment': augment, 'training.seed': 3,
              'training.augmented_views': 2,
              'evaluation.min_accuracy': 0.0}

  killed = dict(settings, output=str(tmp_path / 'killed'))
  _kill_when_training_starts(killed)
  config = load_config(overrides=killed)
  assert not os.path.isdir(config.serving_model_dir)
  local_runner.run(config)  # the same command again
  resumed = report.latest_run_summary(config)
  for component in UPSTREAM:
    assert resumed.executions[component] == 'CACHED', resumed.executions
  for component in ('Trainer', 'Evaluator', 'AtomicPusher'):
    assert resumed.executions[component] == 'COMPLETE', resumed.executions

  uninterrupted = load_config(overrides=dict(settings, output=str(tmp_path / 'uninterrupted')))
  local_runner.run(uninterrupted)
  reference = report.latest_run_summary(uninterrupted)
  assert resumed.metrics['Overall'] == pytest.approx(reference.metrics['Overall'], abs=1e-6)
  images = [open(p, 'rb').read() for p in sorted(glob.glob(os.path.join(data, '*', '*')))[::7]]
  np.testing.assert_allclose(_probabilities(config, images),
                             _probabilities(uninterrupted, images), atol=1e-5)
