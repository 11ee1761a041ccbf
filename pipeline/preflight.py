"""Cheap checks that fail a run before any expensive work starts."""

import os

from components import image_ingest
from pipeline import pipeline as pipeline_lib
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
  """Data folder, class names, weights file, cut layer and fine-tuning layer: fails clearly."""
  if not os.path.isdir(config.data.path):
    raise ConfigError(f'data.path: {config.data.path} is not a folder.')
  if config.inference.data and not os.path.isdir(config.inference.data):
    raise ConfigError(f'inference.data: {config.inference.data} is not a folder.')
  try:
    class_names = pipeline_lib.resolve_class_names(config)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  if len(class_names) < 2:
    raise image_ingest.IngestError(
        f'Need at least two class folders under {config.data.path}, found {class_names or "none"}.')
  # Builds the backbone once: loads the weights file and resolves the cut layer.
  backbone = model_lib.build_backbone(config.model)
  if config.training.fine_tune_from:
    model_lib.fine_tune_start(backbone, config.training.fine_tune_from)
