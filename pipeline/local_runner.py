"""Runs the pipeline locally with LocalDagRunner (Beam DirectRunner inside components).

Used by `transfer-pipeline run` and by the TFX CLI:

  TRANSFER_PIPELINE_CONFIG=/abs/my.yaml \\
  tfx pipeline create --engine local --pipeline_path /abs/pipeline/local_runner.py
  tfx run create --engine local --pipeline_name <pipeline_name>

Without TRANSFER_PIPELINE_CONFIG it runs the built-in demo data set
(`make demo` writes it to data/digits) into runs/tfx-cli.
"""

import os
from typing import Optional

import contract  # pylint: disable=unused-import  # first: selects Keras 2 for TensorFlow
if __name__ == '__main__':  # the TFX CLI: drop known-harmless messages before TFX loads
  from console import known_noise  # pylint: disable=g-import-not-at-top
  known_noise.install()

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging
from tfx import v1 as tfx

from pipeline import definition as pipeline_lib
from pipeline.configs import PipelineConfig, load_config
from pipeline.observed_runner import ComponentListener, ObservedLocalDagRunner
from pipeline.output_lock import output_lock

CONFIG_ENV = 'TRANSFER_PIPELINE_CONFIG'
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_config() -> PipelineConfig:
  """The config the TFX CLI runs: $TRANSFER_PIPELINE_CONFIG, or the demo data set."""
  path = os.environ.get(CONFIG_ENV)
  if path:
    return load_config(path)
  return load_config(overrides={'data.path': os.path.join(PROJECT_ROOT, 'data', 'digits'),
                                'output': os.path.join(PROJECT_ROOT, 'runs', 'tfx-cli')})


def run(config: PipelineConfig, listener: Optional[ComponentListener] = None) -> None:
  """Builds and runs the whole pipeline in this process, holding the output folder's lock;
  `listener` hears when each component starts and ends."""
  config.validate()
  with output_lock(config.output):
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        os.path.abspath(config.metadata_path))
    ObservedLocalDagRunner(listener).run(
        pipeline_lib.create_pipeline(config, metadata_connection_config=metadata))


if __name__ == '__main__':
  logging.set_verbosity(logging.INFO)
  run(default_config())
