"""The benchmark is not run by `make test`, but every project name it imports, at any
depth (stages import inside functions), must exist: a moved module breaks it here."""

import ast
import importlib
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('bench', 'components', 'console', 'contract', 'kubeflow', 'pipeline', 'tests',
            'tools', 'trainer')


def _project_imports():
  for name in sorted(os.listdir(os.path.join(ROOT, 'bench'))):
    if name.endswith('.py'):
      with open(os.path.join(ROOT, 'bench', name)) as f:
        tree = ast.parse(f.read())
      for node in ast.walk(tree):
        if (isinstance(node, ast.ImportFrom) and node.module
            and node.module.split('.')[0] in PACKAGES):
          for alias in node.names:
            yield f'bench/{name}', node.module, alias.name


@pytest.mark.parametrize('source, module, name', list(_project_imports()))
def test_bench_imports_resolve(source, module, name):
  imported = importlib.import_module(module)
  assert hasattr(imported, name) or importlib.util.find_spec(f'{module}.{name}'), (
      f'{source}: from {module} import {name}')
