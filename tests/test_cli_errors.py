"""Every user error answers in one line with exit code 2, before TensorFlow is imported.

Each case runs the command line in a child process (as the console script does), so the
check that TensorFlow was never imported is real. Timings are in bench/cli_errors.py.
"""

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.cli_process import PROJECT_ROOT, run_cli

NO_TF = 'tensorflow imported: False'


@pytest.fixture
def bad_config(tmp_path):
  path = tmp_path / 'bad.yaml'
  path.write_text('model: {image_sise: 150}\n')
  return str(path)


def _fake_run_folder(tmp):
  """A run's output folder whose serving_model/<name>/1 looks like a SavedModel (checks
  before TensorFlow only look at the layout); an empty folder and a text file beside."""
  version = os.path.join(tmp, 'run', 'serving_model', 'image_classifier', '1')
  os.makedirs(version)
  open(os.path.join(version, 'saved_model.pb'), 'wb').close()
  os.makedirs(os.path.join(tmp, 'empty', 'sub'))
  os.makedirs(os.path.join(tmp, 'unpushed', 'serving_model'))
  return os.path.join(tmp, 'run')


def _folders(tmp, classes):
  """A data folder: class name -> number of files (counted before the run, not read)."""
  root = os.path.join(tmp, '-'.join(classes))
  for name, count in classes.items():
    os.makedirs(os.path.join(root, name))
    for i in range(count):
      open(os.path.join(root, name, f'{i}.jpg'), 'wb').close()
  open(os.path.join(root, 'flower' if 'flower' in classes else 'cats', '.hidden.jpg'),
       'wb').close()
  return root


def _cases(data, config, tmp):
  run = _fake_run_folder(tmp)
  one_class = _folders(tmp, {'cats': 5})
  tiny_class = _folders(tmp, {'china': 3, 'flower': 1})
  return [
      (['run', '--data', data, '--output', f'{data}/run'],
       f'output: {data}/run is inside data.path {data}: the run would read its own files'),
      (['run', '--data', one_class], "data.path: need at least two classes (one subfolder "
       f"each), found ['cats'] in {one_class}."),
      (['run', '--data', tiny_class], "data.path: class 'flower' has 1 image, too few for both "
       'splits: every class needs at least 2'),
      (['run'], 'run needs --data'),
      (['run', '--data', f'{tmp}/missing'], f'data.path: {tmp}/missing is not a folder'),
      (['run', '--data', data, '--bogus'], 'unrecognized arguments: --bogus'),
      (['run', '--data', data, '--epochs', 'ten'], "argument --epochs: invalid int value: 'ten'"),
      (['run', '--data', data, '--config', config], 'Unknown config key model.image_sise'),
      (['run', '--data', data, '--config', f'{tmp}/none.yaml'], 'Cannot read config file'),
      (['run', '--data', data, '--image-size', '74'], 'model.image_size: expected an integer >= 75'),
      (['run', '--data', data, '--weights', f'{tmp}/w_notop.h5'], 'w_notop.h5 does not exist'),
      (['run', '--data', data, '--beam-option', 'num_workers=2'], '--beam-option needs --beam-preset'),
      (['predict', f'{tmp}/x.jpg'], 'one of the arguments --model --server is required'),
      (['predict', '--model', f'{tmp}/missing', 'x.jpg'], f'--model: {tmp}/missing does not exist'),
      (['predict', '--model', tmp, 'x.jpg'], f'--model: No SavedModel versions under {tmp}'),
      (['predict', '--model', f'{tmp}/unpushed', 'x.jpg'],
       f'--model: No pushed model under {tmp}/unpushed/serving_model'),
      (['predict', '--model', run, f'{tmp}/missing.jpg'], f'{tmp}/missing.jpg does not exist'),
      (['predict', '--model', run, f'{tmp}/empty'], f'No files to classify in {tmp}/empty'),
      (['predict', '--model', run, data, '--output', f'{tmp}/p.txt'],
       'expected a .csv or .jsonl file name'),
      (['predict', '--model', run, data, '--output', f'{tmp}/no/p.csv'],
       f'--output: folder {tmp}/no does not exist'),
      (['predict', '--model', run, data, '--batch-size', '0'], '--batch-size: expected'),
      (['compile-kubeflow', '--data', f'{tmp}/images', '--pipeline-output', 'gs://b/runs'],
       f'data.path: {tmp}/images is a path of this machine, but the pipeline root gs://b/runs'),
      (['compile-kubeflow', '--data', 'gs://b/images', '--epochs', '0'],
       'training.epochs: expected an integer >= 1'),
      (['frobnicate'], "invalid choice: 'frobnicate'"),
  ]


def test_each_user_error_is_one_line_exit_2_without_tensorflow(class_folder, bad_config, tmp_path):
  for args, message in _cases(str(class_folder), bad_config, str(tmp_path)):
    result = run_cli(args, str(tmp_path / 'bin'))
    assert result.returncode == 2, (args, result.stderr)
    assert result.stderr.startswith('error: ') and message in result.stderr, (args, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert NO_TF in result.stdout, (args, result.stdout)


_HOLD_LOCK = '''
import sys, time
from pipeline.output_lock import output_lock
with output_lock(sys.argv[1]):
  print('locked', flush=True)
  time.sleep(600)
'''


def test_a_locked_output_is_refused_in_one_line_without_tensorflow(class_folder, tmp_path):
  output = str(tmp_path / 'run')
  holder = subprocess.Popen([sys.executable, '-c', _HOLD_LOCK, output], stdout=subprocess.PIPE,
                            text=True, cwd=PROJECT_ROOT)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    result = run_cli(['run', '--data', str(class_folder), '--output', output, '--weights', 'none'],
                     str(tmp_path / 'bin'))
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert result.returncode == 2, result.stderr
  assert result.stderr.strip() == (f'error: Another run (process {holder.pid}) is using '
                                   f'{output}; wait for it to finish or choose another output '
                                   'folder.')
  assert NO_TF in result.stdout


def test_a_yaml_module_in_the_current_folder_is_never_imported(tmp_path):
  """The command re-executes nothing: the current folder never comes first on sys.path."""
  untrusted = tmp_path / 'untrusted'
  untrusted.mkdir()
  marker = tmp_path / 'imported'
  (untrusted / 'yaml.py').write_text(f'open({str(marker)!r}, "w").close()\n')
  result = run_cli(['run', '--data', str(tmp_path / 'missing')], str(tmp_path / 'bin'),
                   cwd=str(untrusted))
  assert not marker.exists(), 'yaml.py from the current folder was imported'
  assert result.returncode == 2 and 'is not a folder' in result.stderr, result.stderr


def test_version_names_the_package_and_its_stack_without_tensorflow(tmp_path):
  result = run_cli(['--version'], str(tmp_path / 'bin'))
  assert result.returncode == 0, result.stderr
  assert re.fullmatch(r'transfer-pipeline \S+ \(TFX 1\.16\.0, TensorFlow 2\.16\.2, '
                      r'Python 3\.10\.\d+\)\n', result.stdout), result.stdout
