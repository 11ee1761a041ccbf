"""Cache keys that see code and weights: the fingerprints and where the pipeline puts them."""

import json
import os
import shutil

import pytest
import tensorflow as tf

from pipeline import definition, fingerprints
from pipeline.configs import load_config


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)


@pytest.fixture
def project(tmp_path):
  """A tiny source tree: app.main imports app.helper inside a function; app.other is unused."""
  root = str(tmp_path / 'src')
  _write(os.path.join(root, 'app', '__init__.py'), '')
  _write(os.path.join(root, 'app', 'main.py'),
         'import os\n\ndef run():\n  from app import helper\n  return helper.VALUE\n')
  _write(os.path.join(root, 'app', 'helper.py'), 'from lib.util import X\nVALUE = 1\n')
  _write(os.path.join(root, 'app', 'other.py'), 'VALUE = 2\n')
  _write(os.path.join(root, 'lib', '__init__.py'), '')
  _write(os.path.join(root, 'lib', 'util.py'), 'X = 3\n')
  return root


def test_source_files_follow_imports_transitively(project):
  assert fingerprints.source_files('app.main', project) == [
      os.path.join('app', '__init__.py'), os.path.join('app', 'helper.py'),
      os.path.join('app', 'main.py'), os.path.join('lib', '__init__.py'),
      os.path.join('lib', 'util.py')]
  with pytest.raises(ValueError, match='app.missing'):
    fingerprints.source_files('app.missing', project)


def test_code_fingerprint_changes_with_what_the_module_runs_only(project):
  before = fingerprints.code_fingerprint('app.main', project)
  assert before.startswith(fingerprints.package_version() + '+')
  assert fingerprints.code_fingerprint('app.main', project) == before
  _write(os.path.join(project, 'app', 'other.py'), 'VALUE = 22\n')  # not imported
  assert fingerprints.code_fingerprint('app.main', project) == before
  _write(os.path.join(project, 'lib', 'util.py'), 'X = 4\n')  # two imports away
  assert fingerprints.code_fingerprint('app.main', project) != before


def test_the_trainer_fingerprint_covers_the_model_code_not_the_pipeline():
  task = fingerprints.source_files('trainer.task')
  preprocessing = fingerprints.source_files('trainer.preprocessing')
  assert set(preprocessing) < set(task)
  assert os.path.join('trainer', 'tuning.py') in task  # imported inside run_fn
  assert os.path.join('contract', 'settings.py') in preprocessing
  assert not [f for f in task if f.startswith(('pipeline', 'tools', 'components'))]


def test_weights_fingerprint_is_the_content(tmp_path):
  path = str(tmp_path / 'notop.h5')
  with open(path, 'wb') as f:
    f.write(b'\x01' * 1000)
  stat = os.stat(path)
  first = fingerprints.weights_fingerprint(path)
  with open(path, 'wb') as f:  # rewritten at the same path, same size and time
    f.write(b'\x02' * 1000)
  os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
  assert fingerprints.weights_fingerprint(path) != first
  with open(path, 'wb') as f:
    f.write(b'\x01' * 1000)
  assert fingerprints.weights_fingerprint(path) == first
  assert 'not readable' in fingerprints.weights_fingerprint(str(tmp_path / 'missing.h5'))
  assert fingerprints.weights_fingerprint('none') == 'none'
  assert fingerprints.weights_fingerprint('imagenet') == 'imagenet'


def test_weights_fingerprint_of_a_uri_is_size_and_time():
  uri = 'ram://fingerprints/notop.h5'
  with tf.io.gfile.GFile(uri, 'wb') as f:
    f.write(b'\x01' * 10)
  assert fingerprints.weights_fingerprint(uri).startswith('size=10 mtime=')
  assert 'not readable' in fingerprints.weights_fingerprint('ram://fingerprints/missing.h5')


def _custom_configs(config):
  pipeline = definition.create_pipeline(config)
  configs = {c.id: json.loads(c.exec_properties['custom_config'])
             for c in pipeline.components if c.id in ('Transform', 'Tuner', 'Trainer')}
  [example_gen] = [c for c in pipeline.components if c.id == 'ImageFolderExampleGen']
  configs['ImageFolderExampleGen'] = json.loads(json.loads(
      example_gen.exec_properties['custom_config'])['custom_config']['value'])
  return configs


def _copy_sources(root):
  for package in ('contract', 'console', 'trainer', 'components'):
    shutil.copytree(os.path.join(fingerprints.SOURCE_ROOT, package), os.path.join(root, package),
                    ignore=shutil.ignore_patterns('__pycache__'))


def test_pipeline_puts_code_and_weights_into_the_cache_keys(tmp_path, monkeypatch):
  """A source edit changes the execution properties (the cache key) of the components
  that run the edited code; a rewritten weights file those of the Tuner and Trainer."""
  weights = str(tmp_path / 'notop.h5')
  with open(weights, 'wb') as f:
    f.write(b'weights one')
  config = load_config(overrides={'data.path': str(tmp_path), 'output': str(tmp_path / 'run'),
                                  'model.weights': weights, 'training.augment': False,
                                  'tuning.enabled': True})
  root = str(tmp_path / 'src')
  _copy_sources(root)
  monkeypatch.setattr(fingerprints, 'SOURCE_ROOT', root)
  before = _custom_configs(config)
  assert 'weights_fingerprint' not in before['Transform']
  assert before['ImageFolderExampleGen']['code_fingerprint']

  with open(os.path.join(root, 'components', 'example_gen', 'image_ingest.py'), 'a') as f:
    f.write('\n# a fix to the image reader\n')
  after_ingest_fix = _custom_configs(config)
  assert (after_ingest_fix['ImageFolderExampleGen']['code_fingerprint'] !=
          before['ImageFolderExampleGen']['code_fingerprint'])
  assert {k: after_ingest_fix[k] for k in ('Transform', 'Trainer', 'Tuner')} == {
      k: before[k] for k in ('Transform', 'Trainer', 'Tuner')}
  assert before['Trainer']['weights_fingerprint'] == before['Tuner']['weights_fingerprint']

  with open(os.path.join(root, 'trainer', 'task.py'), 'a') as f:
    f.write('\n# an edit of the training code\n')
  after_task_edit = _custom_configs(config)
  assert after_task_edit['Transform'] == before['Transform']
  assert after_task_edit['ImageFolderExampleGen'] == after_ingest_fix['ImageFolderExampleGen']
  assert after_task_edit['Trainer']['code_fingerprint'] != before['Trainer']['code_fingerprint']
  assert after_task_edit['Tuner']['code_fingerprint'] != before['Tuner']['code_fingerprint']

  with open(os.path.join(root, 'trainer', 'preprocessing.py'), 'a') as f:
    f.write('\n# a fix to the resize\n')
  after_resize_fix = _custom_configs(config)
  for component in ('Transform', 'Trainer', 'Tuner'):
    assert (after_resize_fix[component]['code_fingerprint'] !=
            after_task_edit[component]['code_fingerprint']), component

  with open(weights, 'wb') as f:
    f.write(b'weights two')
  after_weights = _custom_configs(config)
  assert after_weights['Transform'] == after_resize_fix['Transform']
  for component in ('Trainer', 'Tuner'):
    assert (after_weights[component]['weights_fingerprint'] !=
            after_resize_fix[component]['weights_fingerprint'])
    assert (after_weights[component]['code_fingerprint'] ==
            after_resize_fix[component]['code_fingerprint'])
  assert _custom_configs(config) == after_weights  # nothing changed: the same keys


def test_example_gen_executor_reads_its_options_beside_the_fingerprint(tmp_path):
  from components.example_gen import image_folder_example_gen as example_gen  # pylint: disable=g-import-not-at-top
  config = load_config(overrides={'data.path': str(tmp_path), 'data.eval_percent': 30})
  [component] = [c for c in definition.create_pipeline(config).components
                 if c.id == 'ImageFolderExampleGen']
  options = example_gen.unpack_ingest_options(component.exec_properties)
  assert options.eval_percent == 30
