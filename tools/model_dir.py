"""Which SavedModel folder a `--model` path means (standard library only: checked before
TensorFlow is imported)."""

import os


def resolve_model_dir(path: str) -> str:
  """A version folder as is; a serving_model/<name> folder -> its newest version."""
  if os.path.isfile(os.path.join(path, 'saved_model.pb')):
    return path
  if not os.path.isdir(path):
    raise FileNotFoundError(f'No model at {path}.')
  versions = [d for d in os.listdir(path) if d.isdigit()
              and os.path.isfile(os.path.join(path, d, 'saved_model.pb'))]
  if not versions:
    raise FileNotFoundError(f'No SavedModel versions under {path}.')
  return os.path.join(path, max(versions, key=int))
