"""Which SavedModel folder a `--model` path means (standard library only: checked before
TensorFlow is imported)."""

import os

SERVING_FOLDER = 'serving_model'  # <run output>/serving_model/<model_name>/<version>


def _serving_model_of_run(path: str) -> str:
  """A run's output folder -> its serving_model/<name> folder (the only one there)."""
  serving = os.path.join(path, SERVING_FOLDER)
  names = sorted(d for d in os.listdir(serving) if os.path.isdir(os.path.join(serving, d)))
  if not names:
    raise FileNotFoundError(f'No pushed model under {serving} (was a model blessed?).')
  if len(names) > 1:
    raise FileNotFoundError(f'{serving} holds several models ({", ".join(names)}): '
                            f'name one, e.g. {os.path.join(serving, names[0])}.')
  return os.path.join(serving, names[0])


def resolve_model_dir(path: str) -> str:
  """A version folder as is; a serving_model/<name> folder -> its newest version; a run's
  output folder -> the newest version of its serving_model/<name>."""
  if os.path.isfile(os.path.join(path, 'saved_model.pb')):
    return path
  if not os.path.isdir(path):
    raise FileNotFoundError(f'No model at {path}.')
  if os.path.isdir(os.path.join(path, SERVING_FOLDER)):
    return resolve_model_dir(_serving_model_of_run(path))
  versions = [d for d in os.listdir(path) if d.isdigit()
              and os.path.isfile(os.path.join(path, d, 'saved_model.pb'))]
  if not versions:
    raise FileNotFoundError(f'No SavedModel versions under {path}.')
  return os.path.join(path, max(versions, key=int))
