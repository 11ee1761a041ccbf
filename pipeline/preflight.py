"""Cheap checks that fail a run before any expensive work starts."""

import os

from pipeline.configs import ConfigError, PipelineConfig
from trainer import model as model_lib


def describe_weights(weights: str) -> str:
  if weights == 'imagenet':
    return 'ImageNet (downloaded by Keras; needs internet access)'
  if weights == 'none':
    return ('none: random initialisation. No pretrained weights are available offline; '
            "use --weights imagenet (internet) or a local _notop.h5 file for real transfer")
  return f'local weights file {weights}'


def check(config: PipelineConfig) -> None:
  """Data folder, weights file, cut layer and fine-tuning layer: fails clearly.

  A local data folder must exist; what it holds (classes, files) is checked by
  ExampleGen when it runs, as for a remote folder.
  """
  if '://' not in config.data.path and not os.path.isdir(config.data.path):
    raise ConfigError(f'data.path: {config.data.path} is not a folder.')
  # Builds the backbone once: loads the weights file and resolves the cut layer.
  backbone = model_lib.build_backbone(config.model)
  if config.training.fine_tune_from:
    model_lib.fine_tune_start(backbone, config.training.fine_tune_from)
