"""Cheap checks that fail a run before any expensive work starts.

`check_files` needs only the standard library (the CLI runs it before importing
TensorFlow, so that these mistakes answer at once); `check` adds the checks that
need TFX and Keras.
"""

import os

from pipeline.configs import ConfigError, PipelineConfig


def describe_weights(weights: str) -> str:
  if weights == 'imagenet':
    return 'ImageNet (downloaded by Keras; needs internet access)'
  if weights == 'none':
    return ('none: random initialisation. No pretrained weights are available offline; '
            "use --weights imagenet (internet) or a local _notop.h5 file for real transfer")
  return f'local weights file {weights}'


def check_files(config: PipelineConfig) -> None:
  """Local data and inference folders and a local weights file exist (what a folder
  holds is checked by its ExampleGen when it runs, as for a remote folder)."""
  if '://' not in config.data.path and not os.path.isdir(config.data.path):
    raise ConfigError(f'data.path: {config.data.path} is not a folder.')
  inference = config.inference.data
  if inference and '://' not in inference and not os.path.isdir(inference):
    raise ConfigError(f'inference.data: {config.inference.data} is not a folder.')
  schema = config.data.schema
  if schema and '://' not in schema and not os.path.isfile(schema):
    raise ConfigError(f'data.schema: {schema} is not a file.')
  weights = config.model.weights
  if weights.endswith('.h5') and not os.path.isfile(weights):
    raise ConfigError(f'model.weights: Weights file {weights} does not exist.')


def check(config: PipelineConfig) -> None:
  """Data folder, weights file, cut layer and fine-tuning layer: fails clearly."""
  from trainer import model as model_lib  # pylint: disable=g-import-not-at-top
  check_files(config)
  # Builds the backbone once: loads the weights file and resolves the cut layer.
  backbone = model_lib.build_backbone(config.model)
  if config.training.fine_tune_from:
    model_lib.fine_tune_start(backbone, config.training.fine_tune_from)
