"""What `transfer-pipeline run` shows: component lines on the console, library output in
<output>/logs/run.log, one-line failures."""

import logging
import os
import re

import pytest

from pipeline import local_runner
from tools import cli, preflight, run_summary as report
from console import known_noise
from tests.cli_process import run_cli

COMPONENTS = ('ImageFolderExampleGen', 'StatisticsGen', 'SchemaGen', 'ExampleValidator',
              'DataValidation', 'Transform', 'Trainer', 'Evaluator', 'ServingCanary',
              'AtomicPusher', 'EvaluationReport')
# Every line a default run may print; anything else on the console is noise.
CONSOLE_LINES = [
    r"Running pipeline '.*' on .* -> .*", r'Backbone weights: .*', r'Beam: .*',
    r'Log: \S+run\.log( \(\d+ warnings?\))?',
    r'\[\d+/\d+\] \w+ \.\.\.', r'\[\d+/\d+\] \w+ (done|cached) in (\d+ min )?[\d.]+ s(: .*)?',
    r'Feature pass \((train|eval)(, \d+ augmented views?)?\): \d+ images in [\d.]+ s '
    r'\(.*images/s\)',
    r'  Epoch \d+/\d+ - [\d.]+ s( - \w+ [\d.]+)+',
    r'', r'\|.*\|', r'Blessed: .*', r'Serving canary: .*', r'Pushed model: .*',
    r'Training curves: .*',
    r'Evaluation report: .*', r'Schema: .*',
]
# Messages the libraries emit in every run, which must stay out of the console.
NOISE = [r'Unable to register cu', r'TensorRT', r'Local rendezvous', r'Instructions for updating',
         r'FutureWarning', r'non-supported Python', r'property_predicate', r'payload_format',
         r'prism', r'WARNING', r'INFO']


def _fake_pipeline(monkeypatch, run):
  monkeypatch.setattr(preflight, 'check', lambda config: None)
  monkeypatch.setattr(local_runner, 'run', run)
  monkeypatch.setattr(report, 'latest_run_summary', lambda config: None)
  monkeypatch.setattr(report, 'format_summary', lambda summary: 'summary table')


def _library_output(config, listener=None):
  logging.getLogger('some.library').info('a library talks')
  os.write(2, b'a C++ line on stderr\n')
  print('a library print')


def test_library_output_goes_to_the_log_and_verbose_shows_it_live(
    class_folder, tmp_path, monkeypatch, capfd):
  _fake_pipeline(monkeypatch, _library_output)
  log = tmp_path / 'run' / 'logs' / 'run.log'
  args = ['run', '--data', str(class_folder), '--output', str(tmp_path / 'run'),
          '--weights', 'none']
  assert cli.main(args) == 0
  out, err = capfd.readouterr()
  assert 'summary table' in out and f'Log: {log} (0 warnings)' in out
  for line in ('a library talks', 'a C++ line on stderr', 'a library print'):
    assert line not in out + err
    assert line in log.read_text()
  assert cli.main(args + ['--verbose']) == 0
  out, err = capfd.readouterr()
  assert 'a library talks' in err and 'a C++ line on stderr' in err and 'summary table' in out
  assert log.read_text().count(' started (process') == 2  # appended, nothing lost


def test_an_unexpected_failure_is_one_line_with_the_log_path_exit_1(
    class_folder, tmp_path, monkeypatch, capfd):
  def fail(config, listener=None):
    raise RuntimeError('disk on fire\nsecond line of detail')
  _fake_pipeline(monkeypatch, fail)
  assert cli.main(['run', '--data', str(class_folder), '--output', str(tmp_path / 'run'),
                   '--weights', 'none']) == 1
  log = tmp_path / 'run' / 'logs' / 'run.log'
  err = capfd.readouterr().err
  assert err == f'error: RuntimeError: disk on fire (traceback in {log})\n'
  assert 'Traceback' in log.read_text() and 'second line of detail' in log.read_text()


def _lines(pattern_list):
  return [re.compile(p + r'\Z') for p in pattern_list]


@pytest.mark.slow
def test_small_run_shows_one_start_and_one_end_line_per_component_and_no_noise(
    class_folder, tmp_path):
  output = tmp_path / 'run'
  result = run_cli(['run', '--data', str(class_folder), '--output', str(output),
                    '--image-size', '75', '--epochs', '1', '--no-augment', '--weights', 'none'],
                   str(tmp_path / 'bin'))
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stderr == ''
  console = result.stdout.replace('tensorflow imported: True\n', '').splitlines()
  allowed = _lines(CONSOLE_LINES)
  strays = [line for line in console if not any(p.match(line) for p in allowed)]
  assert not strays, strays
  assert not [line for line in console if any(re.search(n, line) for n in NOISE)]
  for k, component in enumerate(COMPONENTS, start=1):
    assert console.count(f'[{k}/{len(COMPONENTS)}] {component} ...') == 1, console
    ends = [line for line in console
            if line.startswith(f'[{k}/{len(COMPONENTS)}] {component} done in ')]
    assert len(ends) == 1, console
  text = '\n'.join(console)
  assert re.search(r'ImageFolderExampleGen done in .*: \d+ train, \d+ eval examples, 0 skipped', text)
  assert re.search(r'Trainer done in .*: 1 epoch, val_accuracy', text)
  assert re.search(r'Evaluator done in .*: (blessed|not blessed: .+)', text)
  assert re.search(r'ServingCanary done in .*: (passed: loaded in [\d.]+ s|not run: the Evaluator '
                   r'did not bless)', text)
  assert 'Feature pass (train)' in text and '  Epoch 1/1 - ' in text
  # Only real warnings are counted: progress lines are INFO, known-harmless library
  # messages are dropped, and this data has none that changes a result's meaning.
  assert console[-1].endswith('run.log (0 warnings)'), console[-1]
  log = (output / 'logs' / 'run.log').read_text()
  assert 'Unable to register cuDNN factory' in log or 'INFO absl' in log  # it went to the log
  for patterns in known_noise.LOG_RECORDS.values():  # dropped where emitted, not just hidden
    assert not [p for p in patterns if re.search(p, log)]
  assert 'non-supported Python version' not in log


def test_a_tool_command_prints_its_result_and_logs_the_libraries(class_folder, tmp_path):
  weights = tmp_path / 'weights' / 'calibrated_notop.h5'
  weights.parent.mkdir()
  result = run_cli(['calibrate-weights', '--data', str(class_folder), '--output', str(weights),
                    '--image-size', '75', '--per-class', '2'], str(tmp_path / 'bin'))
  assert result.returncode == 0 and result.stderr == '', result.stderr[-2000:]
  assert result.stdout.splitlines()[0].startswith('Wrote random InceptionV3 weights ')
  log = (tmp_path / 'weights' / 'logs' / 'calibrate-weights.log').read_text()
  assert 'started (process' in log
