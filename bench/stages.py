"""Benchmark stages; bench/run.py runs each in its own process to measure its memory.

  python -m bench.stages STAGE --config config.json --json result.json [--images FOLDER]

Every stage reads the pipeline config written by run.py and writes a JSON result.
"""

import argparse
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

# pylint: disable=g-import-not-at-top,wrong-import-position
from pipeline.configs import PipelineConfig, config_from_dict

Result = Dict[str, Any]
STAGES: Dict[str, Callable[[PipelineConfig, argparse.Namespace], Result]] = {}


def stage(name: str):
  """Registers a stage function under `name`."""
  def register(fn: Callable[[PipelineConfig, argparse.Namespace], Result]):
    STAGES[name] = fn
    return fn
  return register


def _run_pipeline(config: PipelineConfig, from_nodes: Optional[List[str]] = None,
                  to_nodes: Optional[List[str]] = None) -> float:
  """Runs the pipeline (or the sub-graph from_nodes..to_nodes) in this process; seconds."""
  from tfx import v1 as tfx
  from tfx.orchestration.pipeline import RunOptions
  from pipeline import definition as pipeline_lib
  metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(
      os.path.abspath(config.metadata_path))
  start = time.time()
  tfx.orchestration.LocalDagRunner().run(
      pipeline_lib.create_pipeline(config, metadata_connection_config=metadata),
      run_options=RunOptions(from_nodes=from_nodes, to_nodes=to_nodes)
      if from_nodes or to_nodes else None)
  return time.time() - start


@stage('weights')
def weights_stage(config: PipelineConfig, args: argparse.Namespace) -> Result:
  """Writes the calibrated `.h5` (offline stand-in for ImageNet) that every path loads."""
  from tools.class_folder import load_class_folder
  from trainer.model import write_calibrated_weights
  images = load_class_folder(args.images, config.model.image_size, per_class=32).images
  write_calibrated_weights(config.model.weights, images)
  return {'images': len(images)}


@stage('pipeline')
def pipeline_stage(config: PipelineConfig, args: argparse.Namespace) -> Result:
  """The whole pipeline, as `transfer-pipeline run` runs it (local_runner.run)."""
  from pipeline import local_runner
  start = time.time()
  local_runner.run(config)
  return {'seconds': time.time() - start}


@stage('upstream')
def upstream_stage(config: PipelineConfig, args: argparse.Namespace) -> Result:
  """ExampleGen to DataValidation only (inputs and upstream nodes of an isolated Transform:
  a partial run reuses every upstream node's execution)."""
  return {'seconds': _run_pipeline(config, to_nodes=['DataValidation'])}


def _dir_bytes(uri: str) -> int:
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(uri) for f in files)


@stage('transform')
def transform_stage(config: PipelineConfig, args: argparse.Namespace) -> Result:
  """Transform alone on the last run's examples; size of its transformed examples."""
  import tensorflow as tf
  from bench import mlmd
  seconds = _run_pipeline(config, from_nodes=['Transform'], to_nodes=['Transform'])
  uri = mlmd.output_uri(config.metadata_path, 'Transform', 'transformed_examples')
  files = tf.io.gfile.glob(os.path.join(uri, '*', '*'))
  count = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type='GZIP'))
  size = _dir_bytes(uri)
  return {'seconds': seconds, 'examples': count, 'transformed_bytes': size,
          'bytes_per_transformed_example': size / max(count, 1)}


def _fn_args(config: PipelineConfig, output: str):
  """FnArgs as TFX's Trainer builds them, on the newest Transform output in MLMD."""
  from tfx.components.trainer import fn_args_utils
  from tfx.types import artifact_utils
  from bench import mlmd
  from components.validation.curated_schema import CuratedSchemaGen
  from contract.settings import trainer_custom_config

  def artifact(component, key):  # component: its class name, as MLMD's execution type
    proto, proto_type = mlmd.output_artifact(config.metadata_path, component, key)
    if proto is None:
      raise RuntimeError(f'No {component}.{key} artifact in {config.metadata_path}.')
    return [artifact_utils.deserialize_artifact(proto_type, proto)]

  input_dict = {'examples': artifact('Transform', 'transformed_examples'),
                'transform_graph': artifact('Transform', 'transform_graph'),
                'schema': artifact(CuratedSchemaGen.__name__, 'schema')}
  custom_config = trainer_custom_config(config.model, config.training, config.serving,
                                        config.export)
  fn_args = fn_args_utils.get_common_fn_args(
      input_dict, {'train_args': '{}', 'eval_args': '{}',
                   'custom_config': json.dumps(custom_config)})
  fn_args.transform_output = fn_args.transform_graph_path
  fn_args.serving_model_dir = os.path.join(output, 'Format-Serving')
  fn_args.model_run_dir = os.path.join(output, 'model_run')
  return fn_args


def _timed(module: Any, name: str, seconds: List[float]) -> None:
  """Replaces module.name by a wrapper that appends each call's duration to `seconds`."""
  fn = getattr(module, name)

  def timed(*args, **kwargs):
    start = time.time()
    result = fn(*args, **kwargs)
    seconds.append(time.time() - start)
    return result

  setattr(module, name, timed)


def _time_epochs(epoch_seconds: List[List[float]]) -> None:
  """Makes every `keras.Model.fit` call append a list of its epochs' wall times."""
  import tf_keras as keras

  class EpochTimer(keras.callbacks.Callback):

    def on_train_begin(self, logs=None):
      epoch_seconds.append([])

    def on_epoch_begin(self, epoch, logs=None):
      self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
      epoch_seconds[-1].append(time.time() - self.start)

  fit = keras.Model.fit

  def timed_fit(model, *args, callbacks=None, **kwargs):
    return fit(model, *args, callbacks=list(callbacks or []) + [EpochTimer()], **kwargs)

  keras.Model.fit = timed_fit


def _mean_last_half(values: List[float]) -> float:
  half = values[len(values) // 2:]
  return sum(half) / len(half)


@stage('trainer')
def trainer_stage(config: PipelineConfig, args: argparse.Namespace) -> Result:
  """trainer.task.run_fn on the pipeline's Transform output, as the Trainer calls it."""
  from trainer import task
  fn_args = _fn_args(config, args.output)
  fit_seconds, export_seconds, epoch_seconds, feature_pass_seconds = [], [], [], []
  _timed(task, '_fit', fit_seconds)
  # The feature cache is written by an explicit pass before `fit` (it was part of the
  # first epoch): counted in fit_seconds, so that figures compare as before.
  _timed(task, 'write_feature_cache', feature_pass_seconds)
  _timed(task.export, 'export_serving_model', export_seconds)
  _time_epochs(epoch_seconds)
  start = time.time()
  task.run_fn(fn_args)
  with open(os.path.join(fn_args.model_run_dir, 'history.json')) as f:
    history = json.load(f)
  return {'seconds': time.time() - start,
          'fit_seconds': fit_seconds[0] + sum(feature_pass_seconds),
          'feature_pass_seconds': sum(feature_pass_seconds),
          'export_seconds': export_seconds[0], 'epoch_seconds': epoch_seconds[0],
          'val_accuracy': history['val_accuracy'][-1],
          # Less noisy than the last epoch alone on small runs.
          'val_accuracy_mean_last_half': _mean_last_half(history['val_accuracy']),
          'feature_precision': task.model_lib.resolve_feature_precision(
              config.model.feature_precision)}


@stage('feature_pass')
def feature_pass_stage(config: PipelineConfig, args: argparse.Namespace) -> Result:
  """The frozen backbone alone over up to 512 train images, float32 vs bfloat16:
  images/s and the bfloat16 features' errors against float32."""
  import numpy as np
  import tensorflow as tf
  from tools.class_folder import load_class_folder
  from trainer import model as model_lib
  images = load_class_folder(args.images, config.model.image_size, per_class=256).images
  images = images.astype(np.float32)
  backbone = model_lib.build_backbone(config.model)
  features, result = {}, {'images': len(images)}
  for precision in ('float32', 'bfloat16'):
    extractor = model_lib.feature_extractor(backbone, precision)
    run = tf.function(lambda x, extractor=extractor: extractor(x, training=False))
    run(images[:32])  # trace outside the timing
    start = time.time()
    outputs = [tf.cast(run(images[i:i + 32]), tf.float32).numpy()
               for i in range(0, len(images), 32)]
    result[f'{precision}_images_per_second'] = len(images) / (time.time() - start)
    features[precision] = np.concatenate(outputs)
  error = np.abs(features['bfloat16'] - features['float32'])
  magnitude = np.abs(features['float32'])
  result.update(max_error_over_max_feature=float(error.max() / magnitude.max()),
                mean_error_over_mean_feature=float(error.mean() / magnitude.mean()))
  return result


def pushed_model_dir(config: PipelineConfig) -> str:
  """The newest pushed version; the Trainer's model when nothing was pushed."""
  root = config.serving_model_dir
  versions = sorted(v for v in os.listdir(root) if v.isdigit()) if os.path.isdir(root) else []
  if versions:
    return os.path.join(root, versions[-1])
  from bench import mlmd
  return os.path.join(mlmd.output_uri(config.metadata_path, 'Trainer', 'model'), 'Format-Serving')


@stage('serving')
def serving_stage(config: PipelineConfig, args: argparse.Namespace) -> Result:
  """Latency and images/s: image-bytes signature vs bare Keras model, batch 1 and 32."""
  from bench import serving as serving_lib
  model_dir = pushed_model_dir(config)
  result = serving_lib.measure(model_dir, args.images, config.model.image_size,
                               seconds=args.seconds)
  return {'model_dir': model_dir, **result}


@stage('predict')
def predict_stage(config: PipelineConfig, args: argparse.Namespace) -> Result:
  """`transfer-pipeline predict` at batch 32 over a folder vs the bare model."""
  from bench import inference
  model_dir = args.model or pushed_model_dir(config)
  return {'model_dir': model_dir,
          **inference.measure_predict(model_dir, args.images, config.model.image_size)}


@stage('tuner')
def tuner_stage(config: PipelineConfig, args: argparse.Namespace) -> Result:
  """trainer.tuning.tuner_fn + search, as TFX's Tuner runs them, on the Transform output."""
  import dataclasses
  from trainer import tuning
  fn_args = _fn_args(config, args.output)
  fn_args.custom_config['tuning'] = dataclasses.asdict(config.tuning)
  fn_args.working_dir = os.path.join(args.output, 'tuner')
  start = time.time()
  result = tuning.tuner_fn(fn_args)
  result.tuner.search(**result.fit_kwargs)
  trials = [t for t in result.tuner.oracle.trials.values() if t.status == 'COMPLETED']
  best = result.tuner.oracle.get_best_trials(1)[0]
  return {'seconds': time.time() - start, 'trials': len(trials),
          'best_val_accuracy': best.score, 'best_values': best.hyperparameters.values,
          'trial_seconds': [t.hyperparameters.values.get(tuning.SECONDS_KEY) for t in trials]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('stage', choices=sorted(STAGES))
  parser.add_argument('--config', required=True, help='PipelineConfig as JSON')
  parser.add_argument('--json', required=True, help='where to write the result')
  parser.add_argument('--images', help='image folder (weights, serving, predict)')
  parser.add_argument('--output', help='output folder (trainer)')
  parser.add_argument('--model', help='SavedModel folder (predict; default: the pushed one)')
  parser.add_argument('--seconds', type=float, default=5.0, help='time per serving figure')
  args = parser.parse_args()
  with open(args.config) as f:
    config = config_from_dict(json.load(f))
  result = STAGES[args.stage](config, args)
  with open(args.json, 'w') as f:
    json.dump(result, f, indent=2)


if __name__ == '__main__':
  main()
