"""The pipeline definition: one function builds it for every orchestrator."""

import dataclasses
import json
import os
from typing import List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from components.pusher.atomic_pusher import AtomicPusher
from components.inference.bulk_inferrer import BoundedBulkInferrer
from components.report.evaluation_report import EvaluationReport
from components.example_gen.image_folder_example_gen import ImageFolderExampleGen
from components.inference.inference_table import InferenceTable
from components.insight.data_insight import DataInsightGen
from components.example_gen.unlabeled_images import UnlabeledImageExampleGen
from contract.features import CLASS_NAME_KEY, EXAMPLES_NUMERIC_SIGNATURE, LABEL_KEY
from contract.settings import trainer_custom_config
from pipeline import beam
from pipeline.configs import EvaluationConfig, PipelineConfig

PREPROCESSING_FN = 'trainer.preprocessing.preprocessing_fn'
EVALUATOR_MODULE = 'components.evaluator.evaluator_module'
RUN_FN = 'trainer.task.run_fn'
TUNER_FN = 'trainer.tuning.tuner_fn'


def _absolute(path: str) -> str:
  """Absolute local path; URIs such as gs://bucket/x are kept as they are."""
  return path if '://' in path else os.path.abspath(path)


def _example_gen(config: PipelineConfig) -> ImageFolderExampleGen:
  """Nothing is listed here: layout, classes and fingerprint are decided when it runs."""
  data = config.data
  return ImageFolderExampleGen(
      input_base=_absolute(data.path), eval_percent=data.eval_percent,
      num_shards=data.num_shards, max_skipped_fraction=data.max_skipped_fraction,
      max_image_pixels=data.max_image_pixels, max_image_bytes=data.max_image_bytes,
      class_names=data.class_names)


def data_insight(config: PipelineConfig, examples) -> DataInsightGen:
  """Label issues, image quality, duplicates, leaks and outliers of every run's data, on
  the backbone the run trains (its weights, cut layer and image size)."""
  data = config.data
  return DataInsightGen(
      examples=examples, model=json.dumps(dataclasses.asdict(config.model)),
      max_eval_leaks=-1 if data.max_eval_leaks is None else data.max_eval_leaks,
      max_label_issue_fraction=(-1.0 if data.max_label_issue_fraction is None
                                else data.max_label_issue_fraction))


def _accuracy_threshold(min_value: Optional[float],
                        max_drop: Optional[float]) -> tfma.MetricThreshold:
  """A lower bound and/or an allowed drop against the baseline (None: not checked)."""
  threshold = tfma.MetricThreshold()
  if min_value is not None:
    threshold.value_threshold.lower_bound.value = min_value
  if max_drop is not None:
    threshold.change_threshold.direction = tfma.MetricDirection.HIGHER_IS_BETTER
    threshold.change_threshold.absolute.value = -max_drop - 1e-10
  return threshold


def accuracy_thresholds(evaluation: EvaluationConfig) -> List[tfma.PerSliceMetricThreshold]:
  """`min_accuracy`/`max_accuracy_drop` on the overall slice only; the optional
  `min_class_accuracy`/`max_class_accuracy_drop` on each true-class slice."""
  thresholds = [tfma.PerSliceMetricThreshold(
      slicing_specs=[tfma.SlicingSpec()],
      threshold=_accuracy_threshold(evaluation.min_accuracy, evaluation.max_accuracy_drop))]
  if evaluation.min_class_accuracy is not None or evaluation.max_class_accuracy_drop is not None:
    thresholds.append(tfma.PerSliceMetricThreshold(
        slicing_specs=[tfma.SlicingSpec(feature_keys=[CLASS_NAME_KEY])],
        threshold=_accuracy_threshold(evaluation.min_class_accuracy,
                                      evaluation.max_class_accuracy_drop)))
  return thresholds


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
  """Accuracy and AUC, overall and sliced by true class, with blessing thresholds; the
  confusion matrix plot.

  Built without knowing the classes (they are found when ExampleGen runs): AUC is
  micro-averaged over the one-vs-rest problems of every class, which needs no class ids.
  """
  accuracy = tfma.MetricConfig(class_name='SparseCategoricalAccuracy',
                               per_slice_thresholds=accuracy_thresholds(config.evaluation))
  return tfma.EvalConfig(
      # Batches within the signature's serving.max_batch (components/evaluator/evaluator_module.py).
      model_specs=[tfma.ModelSpec(signature_name='serving_default', label_key=LABEL_KEY,
                                  prediction_key='probabilities', model_type='tf_generic',
                                  inference_batch_size=config.serving.max_batch)],
      slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[CLASS_NAME_KEY])],
      # The confusion matrix (top class vs true class) for the EvaluationReport comes from
      # the Evaluator's own pass over the eval split.
      metrics_specs=[
          tfma.MetricsSpec(metrics=[
              tfma.MetricConfig(class_name='ExampleCount'), accuracy,
              tfma.MetricConfig(class_name='MultiClassConfusionMatrixPlot')]),
          tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name='AUC')],
                           aggregate=tfma.AggregationOptions(micro_average=True))])


def batch_inference(config: PipelineConfig, model, blessing) -> list:
  """Unlabeled images of `inference.data` -> BulkInferrer (only if `blessing` says
  blessed) -> InferenceTable (predictions.csv, the format of `transfer-pipeline predict`)."""
  data = config.inference.data
  examples = UnlabeledImageExampleGen(input_base=_absolute(data),
                                      max_image_pixels=config.data.max_image_pixels,
                                      max_image_bytes=config.data.max_image_bytes,
                                      num_shards=config.data.num_shards)
  bulk_inferrer = BoundedBulkInferrer(
      examples=examples.outputs['examples'], model=model, model_blessing=blessing,
      model_spec=tfx.proto.ModelSpec(model_signature_name=[EXAMPLES_NUMERIC_SIGNATURE]),
      max_batch_size=config.serving.max_batch)
  table = InferenceTable(inference_result=bulk_inferrer.outputs['inference_result'],
                         examples=examples.outputs['examples'], model=model, blessing=blessing)
  return [examples, bulk_inferrer, table]


def create_pipeline(config: PipelineConfig, metadata_connection_config=None) -> tfx.dsl.Pipeline:
  """ExampleGen -> Statistics/Schema -> Transform -> Trainer -> Evaluator -> Pusher
  -> EvaluationReport (an HTML page per run, blessed or not).

  `metadata_connection_config` is for the local runner; orchestrators such as
  Kubeflow bring their own metadata store and leave it None.
  """
  example_gen = _example_gen(config)
  insight = data_insight(config, example_gen.outputs['examples'])
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
  custom_config = trainer_custom_config(config.model, config.training, config.serving,
                                        config.export)
  tuner = (tfx.components.Tuner(
      tuner_fn=TUNER_FN, examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'], schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(), eval_args=tfx.proto.EvalArgs(),
      custom_config={**custom_config, 'tuning': dataclasses.asdict(config.tuning)})
           if config.tuning.enabled else None)
  trainer = tfx.components.Trainer(
      run_fn=RUN_FN,
      examples=transform.outputs['transformed_examples'],
      transform_graph=transform.outputs['transform_graph'],
      schema=schema_gen.outputs['schema'],
      hyperparameters=tuner.outputs['best_hyperparameters'] if tuner else None,
      train_args=tfx.proto.TrainArgs(),  # epochs come from custom_config
      eval_args=tfx.proto.EvalArgs(),
      custom_config=custom_config)
  if config.data.max_eval_leaks is not None or config.data.max_label_issue_fraction is not None:
    trainer.add_upstream_node(insight)  # a gate that fails stops the run before training
  model_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id('latest_blessed_model_resolver')
  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      baseline_model=model_resolver.outputs['model'],
      eval_config=eval_config(config),
      module_path=EVALUATOR_MODULE)
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
      tuner_results=tuner.outputs['tuner_results'] if tuner else None,
      insight=insight.outputs['insight'],
      max_misclassified=config.evaluation.report_misclassified)
  inference = (batch_inference(config, trainer.outputs['model'], evaluator.outputs['blessing'])
               if config.inference.data else [])
  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=_absolute(config.pipeline_root),
      components=[example_gen, insight, statistics_gen, schema_gen, transform, *([tuner] if tuner else []),
                  trainer, model_resolver, evaluator, pusher, evaluation_report, *inference],
      enable_cache=config.enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam.with_local_runner(config.beam_pipeline_args))
