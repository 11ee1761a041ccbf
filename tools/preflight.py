"""Cheap checks that fail a run before any expensive work starts.

`check_files` needs only the standard library (the CLI runs it before importing
TensorFlow, so that these mistakes answer at once); `check` adds the checks that
need TFX and Keras.
"""

import os
import re
import threading
import urllib.error
import urllib.request
from typing import List, Optional

from contract.features import IMAGE_EXTENSIONS
from pipeline.configs import ConfigError, PipelineConfig

# Where Keras fetches and keeps InceptionV3's top-less ImageNet weights (tf_keras'
# inception_v3.WEIGHTS_PATH_NO_TOP and the file name its get_file caches them under).
IMAGENET_WEIGHTS_FILE = 'inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5'
IMAGENET_WEIGHTS_URL = ('https://storage.googleapis.com/tensorflow/keras-applications/'
                        'inception_v3/' + IMAGENET_WEIGHTS_FILE)
# How long the download URL may take to answer before the run is called offline.
PROBE_SECONDS = 3.0


def describe_weights(weights: str) -> str:
  if weights == 'imagenet':
    cached = os.path.isfile(keras_cache_file())
    return ('ImageNet, as in the lesson (' +
            (f'Keras cache {keras_cache_file()})' if cached else
             'downloaded by Keras on first use)'))
  if weights == 'none':
    return ('none: random initialisation. No pretrained weights are available offline; '
            "use --weights imagenet (internet) or a local _notop.h5 file for real transfer")
  return f'weights file {weights}'


def keras_cache_file() -> str:
  """Where Keras' `get_file` looks for the ImageNet weights: ~/.keras/models, or
  /tmp/.keras/models when ~/.keras is not writable (as get_file decides)."""
  base = os.path.join(os.path.expanduser('~'), '.keras')
  if not os.access(base, os.W_OK):
    base = os.path.join('/tmp', '.keras')
  return os.path.join(base, 'models', IMAGENET_WEIGHTS_FILE)


def unreachable(url: str, timeout: Optional[float] = None) -> Optional[str]:
  """None when `url`'s server answers within about `timeout` seconds (PROBE_SECONDS by
  default; any HTTP status), else why not. Runs in a daemon thread, so a slow name lookup
  cannot hang the run."""
  timeout = PROBE_SECONDS if timeout is None else timeout
  outcome, silent = [], f'no answer within {timeout:g} s'

  def probe():
    try:
      urllib.request.urlopen(urllib.request.Request(url, method='HEAD'), timeout=timeout).close()
      outcome.append(None)
    except urllib.error.HTTPError:  # the server answered
      outcome.append(None)
    except (OSError, ValueError) as e:
      reason = getattr(e, 'reason', e)
      outcome.append(silent if isinstance(reason, TimeoutError) else
                     str(reason) or type(reason).__name__)

  thread = threading.Thread(target=probe, name='weights-probe', daemon=True)
  thread.start()
  thread.join(timeout + 0.5)
  return outcome[0] if outcome else silent


def check_imagenet_weights(weights: str) -> None:
  """'imagenet' offline (not in the Keras cache, download URL unreachable): one line that
  says how to pass a local `_notop.h5` file or `none`, before any component runs."""
  if weights != 'imagenet' or os.path.isfile(keras_cache_file()):
    return
  why = unreachable(IMAGENET_WEIGHTS_URL)
  if why is None:
    return
  raise ConfigError(
      f"model.weights: 'imagenet' (the default) needs the ImageNet weights, which are not "
      f'in the Keras cache ({keras_cache_file()}) and cannot be downloaded ({why}): pass a '
      f'local copy with --weights path/to/{IMAGENET_WEIGHTS_FILE} (model.weights in a '
      f'config; any other _notop.h5 file works too), or --weights none (random '
      f'initialisation: the head hardly learns).')


# A class needs an image for training and one for evaluation.
MIN_IMAGES_PER_CLASS = 2


def _is_inside(path: str, folder: str) -> bool:
  path, folder = os.path.realpath(path), os.path.realpath(folder)
  return os.path.commonpath([path, folder]) == folder


def _visible_class_folders(root: str) -> List[str]:
  return sorted(e.name for e in os.scandir(root)
                if not e.name.startswith('.') and e.is_dir(follow_symlinks=False))


def _count_files(folder: str) -> int:
  """Image files below `folder` that ingestion would try (hidden ones, sidecars and hidden
  folders skipped); counted from the directory listing, nothing is read."""
  count = 0
  for _, dirnames, filenames in os.walk(folder):
    dirnames[:] = [d for d in dirnames if not d.startswith('.')]
    count += sum(not name.startswith('.') and name.lower().endswith(IMAGE_EXTENSIONS)
                 for name in filenames)
  return count


def check_class_folders(root: str) -> None:
  """A local folder of class subfolders has at least two classes, each with enough files
  for both splits. Pre-split and TFRecord folders are checked by their ExampleGen."""
  classes = _visible_class_folders(root)
  if 'train' in classes or not classes:  # pre-split, TFRecords or images in the root
    return
  if len(classes) < 2:
    raise ConfigError(f'data.path: need at least two classes (one subfolder each), found '
                      f'{classes} in {root}.')
  for name in classes:
    count = _count_files(os.path.join(root, name))
    if count < MIN_IMAGES_PER_CLASS:
      raise ConfigError(
          f"data.path: class '{name}' has {count} image{'' if count == 1 else 's'}, too "
          f'few for both splits: every class needs at least {MIN_IMAGES_PER_CLASS} (one to '
          'train on, one to evaluate).')


def check_files(config: PipelineConfig) -> None:
  """Local data and inference folders and a local weights file exist; the output lies
  outside the data; a local folder of classes has two or more, each with enough files
  (counted, not read: what the files hold is checked by the ExampleGen when it runs, as
  for a remote folder); the ImageNet weights can be had. A weights URI (gs://...) is
  read by `check`."""
  data = config.data.path
  spec = re.search(r'{(SPAN|VERSION|YYYY|MM|DD)', data)
  if spec:  # span folders: their parent folder must exist (the span is resolved in `check`)
    parent = os.path.dirname(data[:spec.start()]) or '.'
    if '://' not in data and not os.path.isdir(parent):
      raise ConfigError(f'data.path: {parent} (the folder of the span folders {data}) is not '
                        'a folder.')
  elif '://' not in data:
    if not os.path.isdir(data):
      raise ConfigError(f'data.path: {data} is not a folder.')
    if '://' not in config.output and _is_inside(config.output, data):
      raise ConfigError(f'output: {config.output} is inside data.path {data}: the run would '
                        'read its own files as a class; choose an output folder outside it.')
    check_class_folders(data)
  inference = config.inference.data
  if inference and '://' not in inference and not os.path.isdir(inference):
    raise ConfigError(f'inference.data: {config.inference.data} is not a folder.')
  schema = config.data.schema
  if schema and '://' not in schema and not os.path.isfile(schema):
    raise ConfigError(f'data.schema: {schema} is not a file.')
  weights = config.model.weights
  if weights.endswith('.h5') and '://' not in weights and not os.path.isfile(weights):
    raise ConfigError(f'model.weights: Weights file {weights} does not exist.')
  check_imagenet_weights(weights)


def check(config: PipelineConfig) -> None:
  """Data folder, weights file, cut layer and fine-tuning layer: fails clearly."""
  from trainer import model as model_lib  # pylint: disable=g-import-not-at-top
  check_files(config)
  if '://' not in config.data.path:  # no span folder matches: one line now, not at ExampleGen
    from components.example_gen import spans  # pylint: disable=g-import-not-at-top
    if spans.has_specs(config.data.path):
      spans.resolve(*spans.split_path(os.path.abspath(config.data.path)))
  # Builds the backbone once: loads the weights file and resolves the cut layer.
  backbone = model_lib.build_backbone(config.model)
  if config.training.fine_tune_from:
    model_lib.fine_tune_start(backbone, config.training.fine_tune_from)
