"""What `compile-kubeflow` checks before TFX is imported (standard library only): paths
the cluster cannot read are refused, doubtful ones and an image no cluster can pull are
warned about, each in one line."""

import os
from typing import List

from pipeline.configs import PipelineConfig

EXAMPLE_IMAGE = 'europe-docker.pkg.dev/my-project/ml/transfer-pipeline:0.1.0'


def is_uri(path: str) -> bool:
  """gs://, s3://, ... (kept as they are by create_pipeline; local paths are made absolute)."""
  return '://' in path


def _input_paths(config: PipelineConfig):
  yield 'data.path', config.data.path
  if config.inference.data:
    yield 'inference.data', config.inference.data


def check_paths(config: PipelineConfig) -> None:
  """A remote pipeline root with a local input is refused: the cluster's pods would look
  for the folder of this machine. Both local is allowed (a cluster that mounts volumes at
  those paths); both remote is the usual case."""
  if not is_uri(config.output):
    return
  for field, path in _input_paths(config):
    if not is_uri(path):
      raise ValueError(
          f'{field}: {path} is a path of this machine, but the pipeline root '
          f'{config.output} is remote: give a URI the cluster reads (gs://, s3://), or a '
          'local pipeline output too if the cluster mounts both at these paths.')


def image_has_registry(image: str) -> bool:
  """'gcr.io/p/x:1', 'localhost:5000/x' -> True; 'x:1', 'user/x' (Docker Hub) -> False."""
  first, _, rest = image.partition('/')
  return bool(rest) and ('.' in first or ':' in first or first == 'localhost')


def warnings(config: PipelineConfig, image: str) -> List[str]:
  """Settings that compile but may not run on a cluster, one line each."""
  lines = []
  if not image_has_registry(image):
    lines.append(f'image {image} names no registry, so a cluster would look for it on '
                 f'Docker Hub: push it to a registry the cluster pulls from and pass '
                 f'--image, e.g. {EXAMPLE_IMAGE}.')
  for field, path in (('output', config.output), *_input_paths(config)):
    if not is_uri(path) and not os.path.isabs(path):
      lines.append(f'{field}={path} is a relative local path: it is compiled as '
                   f'{os.path.abspath(path)}, a path of this machine. Use a gs:// / s3:// '
                   'URI or an absolute path that exists in the cluster (e.g. a PVC mount).')
  weights = config.model.weights
  if weights.endswith('.h5') and not is_uri(weights):
    lines.append(f'model.weights={weights} is a file of this machine: the Trainer reads it '
                 'at that path inside the container (copy it into the image or a mounted '
                 'volume).')
  return lines
