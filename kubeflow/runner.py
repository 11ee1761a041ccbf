"""Compiles the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines (offline).

The pipeline is the one `pipeline.definition.create_pipeline` builds for the
local runner; only the orchestrator differs. `compile_pipeline` writes a
PipelineJob JSON that KFP v2 or Vertex AI Pipelines accept; nothing is run or
uploaded here.

From Python:

    from kubeflow.runner import compile_pipeline
    compile_pipeline(config, 'kubeflow/build/pipeline.json',
                     image='europe-docker.pkg.dev/my-project/ml/transfer-pipeline:0.1.0')

With the TFX CLI (this file is the DSL file; it reads its settings from the
environment):

    TRANSFER_PIPELINE_CONFIG=/abs/kubeflow.yaml \\
    TRANSFER_PIPELINE_IMAGE=europe-docker.pkg.dev/my-project/ml/transfer-pipeline:0.1.0 \\
    tfx pipeline compile --engine vertex --pipeline_path /abs/kubeflow/runner.py

Then the JSON lands in $TRANSFER_PIPELINE_OUTPUT_DIR (default kubeflow/build).
"""

import os

import contract  # pylint: disable=unused-import  # first: selects Keras 2 for TensorFlow

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# pylint: disable=g-import-not-at-top,wrong-import-position
from typing import Optional

from absl import logging
from kfp.pipeline_spec.pipeline_spec_pb2 import PipelineDeploymentConfig
from tfx import v1 as tfx

from kubeflow import preflight
from pipeline import definition as pipeline_lib
from pipeline.configs import KubeflowConfig, PipelineConfig, load_config

ResourceSpec = PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
# The steps that train a model: `kubeflow.trainer_*` sets their pods' resources.
TRAINING_STEPS = ('Trainer', 'Tuner')

CONFIG_ENV = 'TRANSFER_PIPELINE_CONFIG'
IMAGE_ENV = 'TRANSFER_PIPELINE_IMAGE'
OUTPUT_DIR_ENV = 'TRANSFER_PIPELINE_OUTPUT_DIR'
# What `docker build -f kubeflow/Dockerfile -t transfer-pipeline:0.1.0 .` tags
# locally; push it to a registry the cluster can pull from and set IMAGE_ENV.
DEFAULT_IMAGE = 'transfer-pipeline:0.1.0'
DEFAULT_OUTPUT_DIR = os.path.join(PROJECT_ROOT, 'kubeflow', 'build')
OUTPUT_FILENAME = 'pipeline.json'


def _check_image(image: str) -> str:
  if not image or not image.strip() or any(c.isspace() for c in image):
    raise ValueError(f'image must be a container image reference such as '
                     f'{preflight.EXAMPLE_IMAGE}, got {image!r}.')
  return image.strip()


def build_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
  """The same pipeline as the local runner, without a metadata connection (KFP brings its
  own). Offline: the data folder is not read (its classes are found when ExampleGen runs)."""
  config.validate()
  preflight.check_paths(config)
  # No span resolver compiles for Kubeflow V2: the ExampleGen reads the training window.
  pipeline = pipeline_lib.create_pipeline(config, metadata_connection_config=None,
                                          kubeflow_v2=True)
  resources = trainer_resources(config.kubeflow)
  if resources is not None:
    for component in pipeline.components:
      if component.id in TRAINING_STEPS:
        component.with_platform_config(resources)
  return pipeline


def trainer_resources(settings: KubeflowConfig) -> Optional[ResourceSpec]:
  """The Trainer pod's CPU, memory and accelerator (a GPU Trainer); None: the defaults."""
  spec = ResourceSpec(cpu_limit=settings.trainer_cpu, memory_limit=settings.trainer_memory_gb)
  if settings.trainer_accelerator:
    spec.accelerator.type = settings.trainer_accelerator
    spec.accelerator.count = settings.trainer_accelerator_count
  return spec if spec.ByteSize() else None


def runner_for(output_path: str, image: str) -> tfx.orchestration.experimental.KubeflowV2DagRunner:
  runner_config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
      default_image=_check_image(image))
  output_dir, filename = os.path.split(output_path)
  return tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=runner_config, output_dir=output_dir or os.getcwd(),
      output_filename=filename)


def compile_pipeline(config: PipelineConfig, output_path: str, image: str) -> str:
  """Writes the KFP v2 PipelineJob JSON of the pipeline to `output_path`; returns it.

  Offline: nothing is uploaded, run or read from the data folder. Paths the cluster cannot
  read are refused (ValueError); `preflight.warnings` lists doubtful settings.
  """
  if not output_path or output_path.endswith(('/', os.sep)):
    raise ValueError(f'output_path must name a file, got {output_path!r}.')
  if not output_path.endswith(('.json', '.yaml', '.yml')):
    raise ValueError(f'output_path must end with .json (or .yaml), got {output_path!r}.')
  pipeline = build_pipeline(config)
  runner_for(output_path, image).run(pipeline)
  return output_path


if __name__ == '__main__':
  # Entry point for `tfx pipeline compile|create --engine vertex --pipeline_path .../runner.py`
  # (the CLI patches KubeflowV2DagRunner.run to learn where the file went) and for
  # `python kubeflow/runner.py`.
  logging.set_verbosity(logging.INFO)
  config_path = os.environ.get(CONFIG_ENV)
  if not config_path:
    raise SystemExit(f'Set {CONFIG_ENV} to the absolute path of a pipeline YAML config '
                     '(data.path and output as the cluster sees them).')
  main_config = load_config(config_path)
  main_image = os.environ.get(IMAGE_ENV, DEFAULT_IMAGE)
  main_output_dir = os.environ.get(OUTPUT_DIR_ENV, DEFAULT_OUTPUT_DIR)
  for warning in preflight.warnings(main_config, main_image):
    logging.warning(warning)
  runner_for(os.path.join(main_output_dir, OUTPUT_FILENAME), main_image).run(
      build_pipeline(main_config))
