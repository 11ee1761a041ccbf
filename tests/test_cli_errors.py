"""Every user error answers in one line with exit code 2, before TensorFlow is imported.

Each case runs the command line in a child process (as the console script does), so the
check that TensorFlow was never imported is real. Timings are in bench/cli_errors.py.
"""

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


def _cases(data, config, tmp):
  return [
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
    result = run_cli(['run', '--data', str(class_folder), '--output', output],
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
