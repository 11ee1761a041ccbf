"""Runs the pipeline locally with LocalDagRunner (Beam DirectRunner inside components).

Used by `transfer-pipeline run` and by the TFX CLI:

  TRANSFER_PIPELINE_CONFIG=/abs/my.yaml \\
  tfx pipeline create --engine local --pipeline_path /abs/pipeline/local_runner.py
  tfx run create --engine local --pipeline_name <pipeline_name>

Without TRANSFER_PIPELINE_CONFIG it runs what `make demo` runs (the demo digits in
data/digits with the calibrated weights data/inception_v3_calibrated_notop.h5, both
written by `make demo`), into runs/tfx-cli, and says so.
"""

import os
import sys
from typing import Optional

import contract  # pylint: disable=unused-import  # first: selects Keras 2 for TensorFlow
if __name__ == '__main__':  # the TFX CLI: drop known-harmless messages before TFX loads
  from console import known_noise  # pylint: disable=g-import-not-at-top
  known_noise.install()

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging
from tfx import v1 as tfx

import console
from pipeline import definition as pipeline_lib
from pipeline.configs import ConfigError, PipelineConfig, load_config
from pipeline.observed_runner import ComponentListener, ObservedLocalDagRunner
from pipeline.output_lock import output_lock

CONFIG_ENV = 'TRANSFER_PIPELINE_CONFIG'
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# What `make demo` writes and runs (the Makefile's DEMO_DATA and DEMO_WEIGHTS).
DEMO_DATA = os.path.join('data', 'digits')
DEMO_WEIGHTS = os.path.join('data', 'inception_v3_calibrated_notop.h5')
CLI_OUTPUT = os.path.join('runs', 'tfx-cli')


def default_config(root: str = PROJECT_ROOT) -> PipelineConfig:
  """The config the TFX CLI runs: $TRANSFER_PIPELINE_CONFIG, or else `make demo`'s run
  (its data and calibrated weights under `root`) into runs/tfx-cli."""
  path = os.environ.get(CONFIG_ENV)
  if path:
    return load_config(path)
  data, weights = os.path.join(root, DEMO_DATA), os.path.join(root, DEMO_WEIGHTS)
  if not (os.path.isdir(data) and os.path.isfile(weights)):
    raise ConfigError(f'No {CONFIG_ENV} set, so the TFX CLI runs the demo, which needs '
                      f'`make demo` first (it writes {data} and {weights}); or set '
                      f'{CONFIG_ENV}=/abs/path/my.yaml.')
  output = os.path.join(root, CLI_OUTPUT)
  console.say(f'No {CONFIG_ENV} set: running what `make demo` runs (data {data}, '
              f'calibrated weights {weights}) into {output}.')
  return load_config(overrides={'data.path': data, 'model.weights': weights,
                                'output': output})


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
  try:
    cli_config = default_config()
  except ConfigError as e:  # one line, exit 2, as the project's CLI answers user mistakes
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  run(cli_config)
