"""Cache keys for code and weights that TFX does not see.

TFX fingerprints the code of a `module_file`, but this pipeline names its code by dotted
path (`run_fn`, `preprocessing_fn`, `tuner_fn`), so an upgrade of this package, a fix to
the resize or a rewritten weights file at the same path would leave every cache key as
it was. The pipeline passes these fingerprints in the `custom_config` of the components
that run the code or read the weights (an execution property, so part of the cache key):

- `code_fingerprint('trainer.task')`: the package version and a sha256 over the source
  of the module and of every project module it imports, transitively (imports inside
  functions included), read when the pipeline is built;
- `weights_fingerprint(path)`: the sha256 of a local weights file's content; for a URI
  (gs://...) its size and modification time, which TensorFlow's filesystem reports.
"""

import ast
import hashlib
import importlib.metadata
import os
from typing import Iterator, List, Optional, Set

import tensorflow as tf

import contract
from contract.settings import WEIGHTS_CHOICES

DISTRIBUTION = 'transfer-pipeline'
# The folder that holds the project's top-level packages (contract/, trainer/, ...).
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(contract.__file__)))
_CHUNK = 1 << 20


def package_version() -> str:
  try:
    return importlib.metadata.version(DISTRIBUTION)
  except importlib.metadata.PackageNotFoundError:
    return 'unknown'


def _source_file(module: str, root: str) -> Optional[str]:
  """The project file that defines `module`, or None when it is not the project's."""
  base = os.path.join(root, *module.split('.'))
  for path in (base + '.py', os.path.join(base, '__init__.py')):
    if os.path.isfile(path):
      return path
  return None


def _imported_names(path: str) -> Iterator[str]:
  """Every absolute module name `path` imports (`from a import b` yields a.b and a)."""
  with open(path, 'rb') as f:
    tree = ast.parse(f.read(), filename=path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      yield from (f'{node.module}.{alias.name}' for alias in node.names)
      yield node.module


def _with_parents(module: str) -> List[str]:
  """'a.b.c' -> ['a', 'a.b', 'a.b.c']: importing a module runs its packages' __init__."""
  parts = module.split('.')
  return ['.'.join(parts[:i]) for i in range(1, len(parts) + 1)]


def source_files(module: str, root: Optional[str] = None) -> List[str]:
  """The project files `module` runs: its own and those of every project module it
  imports, transitively; paths relative to `root` (default SOURCE_ROOT), sorted."""
  root = root or SOURCE_ROOT
  seen: Set[str] = set()
  pending = _with_parents(module)
  while pending:
    path = _source_file(pending.pop(), root)
    if path is None or path in seen:
      continue
    seen.add(path)
    for name in _imported_names(path):
      pending.extend(_with_parents(name))
  if _source_file(module, root) is None:
    raise ValueError(f'{module} is not a module under {root}.')
  return sorted(os.path.relpath(p, root) for p in seen)


def code_fingerprint(module: str, root: Optional[str] = None) -> str:
  """'<package version>+<sha256 of the source files `module` runs>' (16 hex digits)."""
  root = root or SOURCE_ROOT
  digest = hashlib.sha256()
  for relative in source_files(module, root):
    digest.update(relative.encode() + b'\0')
    with open(os.path.join(root, relative), 'rb') as f:
      digest.update(f.read() + b'\0')
  return f'{package_version()}+{digest.hexdigest()[:16]}'


def weights_fingerprint(weights: str) -> str:
  """'imagenet' and 'none' as they are (Keras fixes the ImageNet file per version); a
  local file: 'sha256:<hex>' of its content; a URI: 'size=<bytes> mtime=<ns>'. A file
  that cannot be read when the pipeline is built (e.g. compiled for an image that holds
  it) keeps its name only, and says so."""
  if weights in WEIGHTS_CHOICES:
    return weights
  unreadable = f'{weights} (not readable when the pipeline was built)'
  if '://' not in weights:
    digest = hashlib.sha256()
    try:  # a local run checks the file first (preflight); a compile may not have it
      with open(weights, 'rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK), b''):
          digest.update(chunk)
    except OSError:
      return unreadable
    return f'sha256:{digest.hexdigest()}'
  try:
    stat = tf.io.gfile.stat(weights)
  except tf.errors.OpError:
    return unreadable
  return f'size={stat.length} mtime={stat.mtime_nsec}'
