"""The TFX CLI accepts pipeline/local_runner.py (it runs the file as a script); without
TRANSFER_PIPELINE_CONFIG it runs what `make demo` runs."""

import os
import re
import subprocess
import sys

import pytest
import yaml

from pipeline import local_runner
from pipeline.configs import ConfigError
from tools import cli

RUNNER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      'pipeline', 'local_runner.py')


def test_tfx_pipeline_create_local(class_folder, tmp_path):
  config = tmp_path / 'my.yaml'
  config.write_text(yaml.safe_dump({'pipeline_name': 'cli-check', 'output': str(tmp_path / 'run'),
                                    'data': {'path': str(class_folder)}}))
  env = dict(os.environ, TF_USE_LEGACY_KERAS='1', LOCAL_HOME=str(tmp_path / 'tfx_home'),
             TRANSFER_PIPELINE_CONFIG=str(config))
  tfx = os.path.join(os.path.dirname(sys.executable), 'tfx')
  result = subprocess.run([tfx, 'pipeline', 'create', '--engine', 'local', '--pipeline_path', RUNNER],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Pipeline "cli-check" created successfully' in result.stdout
  assert os.path.isdir(tmp_path / 'tfx_home' / 'cli-check')


def _make_demo_run_args(root):
  """The `transfer-pipeline run` arguments of the Makefile's `demo` target, its variables
  filled in and its relative paths taken from `root` (where make runs)."""
  with open(os.path.join(local_runner.PROJECT_ROOT, 'Makefile')) as f:
    makefile = f.read()
  variables = dict(re.findall(r'^(\w+) := (\S+)$', makefile, re.MULTILINE))
  (line,) = [run for run in re.findall(r'^\t\$\(BIN\)/transfer-pipeline (run .*)$', makefile,
                                      re.MULTILINE) if '$(DEMO_OUTPUT)' in run]
  args = re.sub(r'\$\((\w+)\)', lambda m: variables[m.group(1)], line).split()
  return [os.path.join(root, a) if args[i - 1] in ('--data', '--weights', '--output') else a
          for i, a in enumerate(args)]


def test_without_a_config_the_tfx_cli_runs_what_make_demo_runs(tmp_path, monkeypatch, capsys):
  monkeypatch.delenv(local_runner.CONFIG_ENV, raising=False)
  with pytest.raises(ConfigError, match=r'needs `make demo` first .*digits .*'
                                        r'inception_v3_calibrated_notop\.h5'):
    local_runner.default_config(str(tmp_path))
  (tmp_path / 'data' / 'digits' / 'zero').mkdir(parents=True)  # what `make demo` writes
  (tmp_path / 'data' / 'inception_v3_calibrated_notop.h5').write_bytes(b'weights')
  config = local_runner.default_config(str(tmp_path))
  said = capsys.readouterr().out
  args = cli.build_parser().parse_args(_make_demo_run_args(str(tmp_path)))
  demo = cli._run_config(args)  # pylint: disable=protected-access
  assert config.model.weights == demo.model.weights == str(
      tmp_path / 'data' / 'inception_v3_calibrated_notop.h5')
  assert config.output == str(tmp_path / 'runs' / 'tfx-cli')
  demo.output = config.output
  assert config.to_dict() == demo.to_dict()  # the same data, weights and settings
  assert said.startswith(f'No {local_runner.CONFIG_ENV} set: running what `make demo` runs '
                         f'(data {tmp_path / "data" / "digits"}, calibrated weights '
                         f'{tmp_path / "data" / "inception_v3_calibrated_notop.h5"})'), said
