"""The pipeline definition: one function builds it for every orchestrator."""

import glob
import os
from typing import List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from components import image_ingest
from components.atomic_pusher import AtomicPusher
from components.evaluation_report import EvaluationReport
from components.image_folder_example_gen import ImageFolderExampleGen
from pipeline.configs import PipelineConfig
from trainer.features import LABEL_KEY
from trainer.task import trainer_custom_config

PREPROCESSING_FN = 'trainer.preprocessing.preprocessing_fn'
RUN_FN = 'trainer.task.run_fn'
TFRECORD_PATTERNS = ('*.tfrecord', '*.tfrecord.gz', '*.tfrecord-*', '*.tfrecords', '*.gz')


def _absolute(path: str) -> str:
  """Absolute local path; URIs such as gs://bucket/x are kept as they are."""
  return path if '://' in path else os.path.abspath(path)


def _tfrecord_files(folder: str) -> List[str]:
  return sorted({f for p in TFRECORD_PATTERNS for f in glob.glob(os.path.join(folder, p))})


def is_tfrecord_folder(path: str) -> bool:
  """True for a folder of TFRecords (flat, or in train/ and validation/)."""
  return bool(_tfrecord_files(path) or (_tfrecord_files(os.path.join(path, 'train')) and
                                        _tfrecord_files(os.path.join(path, 'validation'))))


def resolve_class_names(config: PipelineConfig) -> List[str]:
  """Class names in label order: from the class folders, or the config for TFRecords."""
  if is_tfrecord_folder(config.data.path):
    if len(config.data.class_names) < 2:
      raise ValueError('TFRecord input needs data.class_names (at least two, in label order).')
    return list(config.data.class_names)
  return image_ingest.discover_classes(config.data.path)


def _example_gen(config: PipelineConfig):
  data = config.data
  if not is_tfrecord_folder(data.path):
    # A remote folder (gs://, s3://) cannot be fingerprinted while compiling.
    fingerprint = '' if '://' in data.path else image_ingest.fingerprint(data.path)
    return ImageFolderExampleGen(
        data_root=_absolute(data.path), eval_percent=data.eval_percent,
        num_shards=data.num_shards, max_skipped_fraction=data.max_skipped_fraction,
        max_image_pixels=data.max_image_pixels,
        data_fingerprint=fingerprint)
  if _tfrecord_files(data.path):
    output = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name='train', hash_buckets=100 - data.eval_percent),
        example_gen_pb2.SplitConfig.Split(name='eval', hash_buckets=data.eval_percent)]))
    return tfx.components.ImportExampleGen(input_base=_absolute(data.path),
                                           output_config=output)
  splits = example_gen_pb2.Input(splits=[
      example_gen_pb2.Input.Split(name='train', pattern='train/*'),
      example_gen_pb2.Input.Split(name='eval', pattern='validation/*')])
  return tfx.components.ImportExampleGen(input_base=_absolute(data.path),
                                         input_config=splits)


def eval_config(config: PipelineConfig, num_classes: int) -> tfma.EvalConfig:
  """Accuracy (and AUC for two classes), sliced by true class, with blessing thresholds;
  the confusion matrix plot."""
  accuracy = tfma.MetricConfig(
      class_name='SparseCategoricalAccuracy',
      threshold=tfma.MetricThreshold(
          value_threshold=tfma.GenericValueThreshold(
              lower_bound={'value': config.evaluation.min_accuracy}),
          change_threshold=tfma.GenericChangeThreshold(
              direction=tfma.MetricDirection.HIGHER_IS_BETTER,
              absolute={'value': -config.evaluation.max_accuracy_drop - 1e-10})))
  # The confusion matrix (top class vs true class) for the EvaluationReport, from the
  # Evaluator's own pass over the eval split.
  metrics_specs = [tfma.MetricsSpec(metrics=[
      tfma.MetricConfig(class_name='ExampleCount'), accuracy,
      tfma.MetricConfig(class_name='MultiClassConfusionMatrixPlot')])]
  if num_classes == 2:
    metrics_specs.append(tfma.MetricsSpec(
        metrics=[tfma.MetricConfig(class_name='AUC')],
        binarize=tfma.BinarizationOptions(class_ids={'values': [1]})))
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(signature_name='serving_default', label_key=LABEL_KEY,
                                  prediction_key='probabilities', model_type='tf_generic')],
      slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[LABEL_KEY])],
      metrics_specs=metrics_specs)


def create_pipeline(config: PipelineConfig, class_names: Optional[List[str]] = None,
                    metadata_connection_config=None) -> tfx.dsl.Pipeline:
  """ExampleGen -> Statistics/Schema -> Transform -> Trainer -> Evaluator -> Pusher
  -> EvaluationReport (an HTML page per run, blessed or not).

  `metadata_connection_config` is for the local runner; orchestrators such as
  Kubeflow bring their own metadata store and leave it None.
  """
  class_names = class_names or resolve_class_names(config)
  example_gen = _example_gen(config)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.SchemaGen(
      statistics=statistics_gen.outputs['statistics'], infer_feature_shape=True)
  transform = tfx.components.Transform(
      examples=example_gen.outputs['examples'], schema=schema_gen.outputs['schema'],
      preprocessing_fn=PREPROCESSING_FN,
      custom_config={'image_size': config.model.image_size},
      # Pre-transform statistics repeat StatisticsGen's; post-transform ones would only
      # describe opaque pixel strings. Skipping both saves ~20% of Transform's time.
      disable_statistics=True)
  trainer = tfx.components.Trainer(
      run_fn=RUN_FN,
      examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(),  # epochs come from custom_config
      eval_args=tfx.proto.EvalArgs(),
      custom_config=trainer_custom_config(config.model, config.training, class_names))
  model_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id('latest_blessed_model_resolver')
  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      baseline_model=model_resolver.outputs['model'],
      eval_config=eval_config(config, len(class_names)))
  pusher = AtomicPusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=_absolute(config.serving_model_dir))))
  # Reads outputs that every run writes (blessed or not), after the Pusher: a failing
  # report never stops a blessed model from being pushed.
  evaluation_report = EvaluationReport(
      model=trainer.outputs['model'], examples=example_gen.outputs['examples'],
      evaluation=evaluator.outputs['evaluation'], blessing=evaluator.outputs['blessing'],
      model_run=trainer.outputs['model_run'], pushed_model=pusher.outputs['pushed_model'],
      max_misclassified=config.evaluation.report_misclassified)
  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=_absolute(config.pipeline_root),
      components=[example_gen, statistics_gen, schema_gen, transform, trainer,
                  model_resolver, evaluator, pusher, evaluation_report],
      enable_cache=config.enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=list(config.beam_pipeline_args))
