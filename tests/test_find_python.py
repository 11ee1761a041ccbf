"""scripts/find-python310.sh (what `make` builds .venv with), with a fake PATH and HOME."""

import os
import subprocess

import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), '..', 'scripts', 'find-python310.sh')
HOW_TO = "'pip install uv && uv python install 3.10'"


def _fake(path, body: str) -> str:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text('#!/bin/sh\n' + body + '\n')
  path.chmod(0o755)
  return str(path)


def _python(path, version_ok=True) -> str:
  """A stand-in interpreter that passes (or fails) the script's version check."""
  return _fake(path, 'exit 0' if version_ok else 'exit 1')


@pytest.fixture
def machine(tmp_path):
  """An empty PATH folder, HOME and system folder: a machine without Python 3.10."""
  folders = {name: tmp_path / name for name in ('bin', 'home', 'usr_bin')}
  for folder in folders.values():
    folder.mkdir()
  return folders


def _find(machine, **env):
  run = subprocess.run(
      ['/bin/sh', SCRIPT], capture_output=True, text=True, timeout=60, check=False,
      env={'PATH': str(machine['bin']), 'HOME': str(machine['home']),
           'PYTHON310_SYSTEM_DIRS': str(machine['usr_bin']), **env})
  return run.returncode, run.stdout.strip(), run.stderr.strip().splitlines()


def test_python310_on_path_is_found(machine):
  python = _python(machine['bin'] / 'python3.10')
  assert _find(machine)[:2] == (0, python)


def test_a_wrong_version_is_skipped_for_pyenv_or_system(machine):
  _python(machine['bin'] / 'python3.10', version_ok=False)
  pyenv = _python(machine['home'] / '.pyenv/versions/3.10.13/bin/python3.10')
  assert _find(machine)[:2] == (0, pyenv)
  os.remove(pyenv)
  system = _python(machine['usr_bin'] / 'python3.10')
  assert _find(machine)[:2] == (0, system)


def test_uv_installs_python310_when_none_is_found(machine, tmp_path):
  python = _python(tmp_path / 'uv-pythons' / 'python3.10')
  marker = tmp_path / 'installed'
  _fake(machine['bin'] / 'uv', f'''
case "$1 $2" in
  "python install") : > {marker} ;;
  "python find") [ -e {marker} ] && echo {python} || exit 1 ;;
esac''')
  code, out, err = _find(machine)
  assert (code, out) == (0, python) and marker.exists()
  assert any('installing it with uv' in line for line in err)


def test_offline_without_uv_fails_in_one_line_saying_how(machine):
  # python3 exists but cannot fetch uv (no internet: pip fails, here the venv already).
  _fake(machine['bin'] / 'python3', 'exit 1')
  code, out, err = _find(machine)
  assert code == 1 and out == ''
  assert 'Python 3.10 not found' in err[-1] and HOW_TO in err[-1]


def test_no_download_when_told_not_to(machine):
  marker = machine['home'] / 'python3-ran'
  _fake(machine['bin'] / 'python3', f": > {marker}; exit 1")
  code, out, err = _find(machine, PYTHON310_NO_DOWNLOAD='1')
  assert (code, out, len(err)) == (1, '', 1) and HOW_TO in err[0]
  assert not marker.exists()


def test_makefile_builds_the_venv_with_the_script_and_pinned_pip_and_setuptools():
  root = os.path.join(os.path.dirname(__file__), '..')
  with open(os.path.join(root, 'Makefile')) as f:
    makefile = f.read()
  assert '$$(scripts/find-python310.sh)' in makefile
  assert 'pip install -q -r requirements-build.lock' in makefile
  assert '--upgrade' not in makefile
  with open(os.path.join(root, 'requirements-build.lock')) as f:
    pins = {line.split('==')[0] for line in f if '==' in line and not line.startswith('#')}
  assert pins == {'pip', 'setuptools'}
