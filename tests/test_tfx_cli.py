"""The TFX CLI accepts pipeline/local_runner.py (it runs the file as a script)."""

import os
import subprocess
import sys

import yaml

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
