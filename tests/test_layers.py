"""The import direction of the project's layers: a module imports only from its own
package and the layers below it (the README's layout section draws the same map)."""

import ast
import os

import pytest

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Package -> the project packages it may import (besides itself).
ALLOWED = {
    'contract': set(),
    'console': set(),
    'trainer': {'contract', 'console'},
    'components': {'contract', 'console', 'trainer'},
    'pipeline': {'contract', 'console', 'components'},
    'kubeflow': {'contract', 'console', 'components', 'pipeline'},
    'tools': {'contract', 'console', 'trainer', 'components', 'pipeline', 'kubeflow'},
}


def project_imports(path: str):
  """(line, top-level project package) of every absolute import in a module, lazy ones too."""
  with open(path, encoding='utf-8') as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      names = [node.module]
    else:
      continue
    for name in names:
      top = name.split('.')[0]
      if top in ALLOWED:
        yield node.lineno, top


def _modules():
  for package in ALLOWED:
    for folder, _, files in os.walk(os.path.join(PROJECT_ROOT, package)):
      for name in sorted(files):
        if name.endswith('.py'):
          yield package, os.path.join(folder, name)


@pytest.mark.parametrize('package, path', list(_modules()),
                         ids=lambda v: os.path.relpath(v, PROJECT_ROOT) if os.sep in v else v)
def test_imports_point_down(package, path):
  wrong = [f'line {line}: {top}' for line, top in project_imports(path)
           if top != package and top not in ALLOWED[package]]
  assert not wrong, f'{os.path.relpath(path, PROJECT_ROOT)} imports a layer above it: {wrong}'


def test_the_check_sees_a_wrong_import(tmp_path):
  module = tmp_path / 'bad.py'
  module.write_text('def f():\n  from tools import cli\n')
  assert list(project_imports(str(module))) == [(2, 'tools')]


def test_no_module_edits_sys_path():
  for _, path in _modules():
    with open(path, encoding='utf-8') as f:
      text = f.read()
    assert 'sys.path.insert' not in text and 'sys.path[' not in text, path
