"""The pipeline definition: one function builds it for every orchestrator."""

import dataclasses
import json
import os
from typing import List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from components.evaluator import baseline_check, class_coverage
from components.pusher.atomic_pusher import AtomicPusher
from components.inference.bulk_inferrer import BoundedBulkInferrer
from components.report.evaluation_report import EvaluationReport
from components.example_gen.image_folder_example_gen import ImageFolderExampleGen
from components.example_gen.span_window import LatestOrNothingStrategy, SpanWindowStrategy
from components.inference.inference_table import InferenceTable
from components.serving.serving_canary import ServingCanary
from components.resolvers.other_than_this_run import (LatestOtherBlessedModelStrategy,
                                                      PreviousAcceptedStatisticsStrategy)
from components.validation.curated_schema import CuratedSchemaGen
from components.validation.data_validation import DataValidation
from components.insight.data_insight import DataInsightGen
from components.example_gen.unlabeled_images import UnlabeledImageExampleGen
from contract.features import CLASS_NAME_KEY, EXAMPLES_NUMERIC_SIGNATURE, LABEL_KEY
from contract.settings import trainer_custom_config
from pipeline import beam, fingerprints
from pipeline.configs import EvaluationConfig, PipelineConfig

PREPROCESSING_FN = 'trainer.preprocessing.preprocessing_fn'
EVALUATOR_MODULE = 'components.evaluator.evaluator_module'
RUN_FN = 'trainer.task.run_fn'
TUNER_FN = 'trainer.tuning.tuner_fn'


def _absolute(path: str) -> str:
  """Absolute local path; URIs such as gs://bucket/x are kept as they are."""
  return path if '://' in path else os.path.abspath(path)


def _example_gen(config: PipelineConfig, ingest_spans: int = 1) -> ImageFolderExampleGen:
  """Nothing is listed here: span, layout, classes and fingerprint are decided when it runs."""
  data = config.data
  return ImageFolderExampleGen(
      input_base=_absolute(data.path), eval_percent=data.eval_percent,
      num_shards=data.num_shards, max_skipped_fraction=data.max_skipped_fraction,
      max_image_pixels=data.max_image_pixels, max_image_bytes=data.max_image_bytes,
      class_names=data.class_names, max_image_side=config.max_stored_side,
      code_fingerprint=fingerprints.code_fingerprint(ImageFolderExampleGen.__module__),
      ingest_spans=ingest_spans)


def training_window(config: PipelineConfig, example_gen: ImageFolderExampleGen) -> list:
  """With `data.train_spans` > 1 on a runner with span resolvers: the newest N spans'
  Examples (this run's and earlier runs'), and the latest Transform analyzer cache, as
  the penguin example's rolling window does; [] otherwise (this run's span only)."""
  if config.data.train_spans <= 1:
    return []
  window = tfx.dsl.Resolver(
      strategy_class=SpanWindowStrategy, config={'num_spans': config.data.train_spans},
      # A plain upstream channel would only see this run's artifact.
      examples=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples,
                               producer_component_id=example_gen.id),
  ).with_id('span_window_resolver')
  window.add_upstream_node(example_gen)
  cache = tfx.dsl.Resolver(
      strategy_class=LatestOrNothingStrategy,
      # Earlier runs' cache (the Transform's default id; this run's is written after).
      cache=tfx.dsl.Channel(type=tfx.types.standard_artifacts.TransformCache,
                            producer_component_id='Transform',
                            output_key='updated_analyzer_cache'),
  ).with_id('latest_transform_cache_resolver')
  return [window, cache]


def other_blessed_model(resolver_id: str, this_run: tfx.dsl.Channel,
                        exclude: str) -> tfx.dsl.Resolver:
  """The latest blessed model that is not ('itself') or was not derived from
  ('derived') this run's artifact of `this_run`, an output channel (components/resolvers)."""
  return tfx.dsl.Resolver(
      strategy_class=LatestOtherBlessedModelStrategy, config={'exclude': exclude},
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
      this_run=this_run).with_id(resolver_id)


def curated_schema_file(config: PipelineConfig) -> str:
  """The schema a run imports: `data.schema`, else the editable copy an earlier run wrote
  ('' when there is none yet: this run infers it)."""
  if config.data.schema:
    return _absolute(config.data.schema)
  path = _absolute(config.curated_schema_path)
  return path if os.path.isfile(path) else ''


def _schema_gen(config: PipelineConfig, statistics) -> CuratedSchemaGen:
  """`data.schema` or the editable schema imported, or (first run) inferred and written."""
  return CuratedSchemaGen(
      statistics=statistics, schema_file=_absolute(config.data.schema) if config.data.schema
      else '', editable_schema=_absolute(config.curated_schema_path)).with_id('SchemaGen')


def data_validation(config: PipelineConfig, statistics_gen, schema,
                    kubeflow_v2: bool = False) -> list:
  """ExampleValidator (every split against the schema), then DataValidation (drift from
  the last accepted span's statistics; anomalies stop the run unless data.validation: warn)."""
  statistics = tfx.types.standard_artifacts.ExampleStatistics
  previous_accepted = tfx.dsl.Channel(type=statistics, producer_component_id='DataValidation',
                                      output_key='accepted_statistics')
  if kubeflow_v2:
    previous = tfx.dsl.Resolver(strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
                                statistics=previous_accepted)
    # Resolved before this run's statistics exist (Kubeflow's resolver takes the newest
    # ExampleStatistics in the store, whoever wrote it).
    statistics_gen.add_upstream_node(previous)
  else:  # not those accepted from this run's (maybe cached) statistics, unless let through
    previous = tfx.dsl.Resolver(
        strategy_class=PreviousAcceptedStatisticsStrategy,
        statistics=previous_accepted, this_run=statistics_gen.outputs['statistics'])
  previous = previous.with_id('previous_statistics_resolver')
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'], schema=schema)
  data = config.data
  gate = DataValidation(
      statistics=statistics_gen.outputs['statistics'], schema=schema,
      anomalies=example_validator.outputs['anomalies'],
      previous_statistics=previous.outputs['statistics'], mode=data.validation,
      max_class_drift=data.max_class_drift, max_size_drift=data.max_size_drift)
  return [previous, example_validator, gate]


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


def code_and_weights(module: str, config: PipelineConfig, weights: bool = True) -> dict:
  """custom_config entries that put `module`'s source (and the weights file's content)
  into the component's cache key (pipeline/fingerprints.py)."""
  keys = {'code_fingerprint': fingerprints.code_fingerprint(module)}
  if weights:
    keys['weights_fingerprint'] = fingerprints.weights_fingerprint(config.model.weights)
  return keys


def batch_inference(config: PipelineConfig, model, blessing) -> list:
  """Unlabeled images of `inference.data` -> BulkInferrer (only if `blessing` says
  blessed) -> InferenceTable (predictions.csv, the format of `transfer-pipeline predict`)."""
  data = config.inference.data
  examples = UnlabeledImageExampleGen(input_base=_absolute(data),
                                      max_image_pixels=config.data.max_image_pixels,
                                      max_image_bytes=config.data.max_image_bytes,
                                      num_shards=config.data.num_shards,
                                      max_image_side=config.max_stored_side)
  bulk_inferrer = BoundedBulkInferrer(
      examples=examples.outputs['examples'], model=model, model_blessing=blessing,
      model_spec=tfx.proto.ModelSpec(model_signature_name=[EXAMPLES_NUMERIC_SIGNATURE]),
      max_batch_size=config.serving.max_batch)
  table = InferenceTable(inference_result=bulk_inferrer.outputs['inference_result'],
                         examples=examples.outputs['examples'], model=model, blessing=blessing)
  return [examples, bulk_inferrer, table]


def serving_canary(config: PipelineConfig, model, examples, blessing) -> ServingCanary:
  """The blessed candidate served from its own files in a fresh process; its
  InfraBlessing (with the warmed-up model) gates the Pusher."""
  canary = config.canary
  return ServingCanary(
      model=model, examples=examples, model_blessing=blessing, model_name=config.model_name,
      max_batch=config.serving.max_batch, max_load_seconds=canary.max_load_seconds,
      max_memory_mib=canary.max_memory_mib, tolerance=canary.tolerance,
      num_examples=canary.num_examples, timed_requests=canary.timed_requests,
      timeout_seconds=canary.timeout_seconds)


def create_pipeline(config: PipelineConfig, metadata_connection_config=None,
                    kubeflow_v2: bool = False) -> tfx.dsl.Pipeline:
  """ExampleGen -> Statistics/Schema -> data validation -> Transform -> Trainer -> Evaluator
  -> ServingCanary -> Pusher -> EvaluationReport (an HTML page per run, blessed or not).

  `metadata_connection_config` is for the local runner; orchestrators such as
  Kubeflow bring their own metadata store and leave it None.
  `kubeflow_v2`: only resolvers that the Kubeflow V2 compiler takes (the latest artifact,
  the latest blessed model): the ExampleGen itself ingests the `data.train_spans` newest
  spans, and warm start takes the latest blessed model.
  """
  example_gen = _example_gen(config, config.data.train_spans if kubeflow_v2 else 1)
  insight = data_insight(config, example_gen.outputs['examples'])
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = _schema_gen(config, statistics_gen.outputs['statistics'])
  validation = data_validation(config, statistics_gen, schema_gen.outputs['schema'],
                               kubeflow_v2)
  window = [] if kubeflow_v2 else training_window(config, example_gen)
  # The window's Examples are transformed in the Trainer (materialize=False: Transform
  # writes one transformed artifact per input only where it has one output per input).
  examples = window[0].outputs['examples'] if window else example_gen.outputs['examples']
  transform = tfx.components.Transform(
      examples=examples, schema=schema_gen.outputs['schema'],
      preprocessing_fn=PREPROCESSING_FN,
      custom_config={'image_size': config.model.image_size,
                     **code_and_weights(PREPROCESSING_FN.rsplit('.', 1)[0], config, weights=False)},
      analyzer_cache=window[1].outputs['cache'] if window else None,
      materialize=not window,
      # Pre-transform statistics repeat StatisticsGen's; post-transform ones would only
      # describe opaque pixel strings. Skipping both saves ~20% of Transform's time.
      disable_statistics=True)
  custom_config = trainer_custom_config(config.model, config.training, config.serving,
                                        config.export)
  if window:
    custom_config['raw_examples'] = True
  trainer_examples = examples if window else transform.outputs['transformed_examples']
  tuner = (tfx.components.Tuner(
      tuner_fn=TUNER_FN, examples=trainer_examples,
      transform_graph=transform.outputs['transform_graph'], schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(), eval_args=tfx.proto.EvalArgs(),
      custom_config={**custom_config, 'tuning': dataclasses.asdict(config.tuning),
                     **code_and_weights(TUNER_FN.rsplit('.', 1)[0], config)})
           if config.tuning.enabled else None)
  # Kubeflow V2 compiles TFX's latest-blessed-model resolver only; elsewhere the
  # warm-start model and the baseline pass over the models an unchanged rerun already
  # has, so that it stays cached.
  latest_blessed = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id('latest_blessed_model_resolver') if kubeflow_v2 else None
  # Warm start (training.warm_start): the head starts from this model's head when the
  # classes are the same.
  # This run's examples: with a window, its newest span (models that read it are passed over).
  warm_start = (latest_blessed or other_blessed_model(
      'warm_start_model_resolver', example_gen.outputs['examples'] if window
      else transform.outputs['transformed_examples'], 'derived')
                ) if config.training.warm_start else None
  trainer = tfx.components.Trainer(
      run_fn=RUN_FN,
      examples=trainer_examples,
      base_model=warm_start.outputs['model'] if warm_start else None,
      transform_graph=transform.outputs['transform_graph'],
      schema=schema_gen.outputs['schema'],
      hyperparameters=tuner.outputs['best_hyperparameters'] if tuner else None,
      train_args=tfx.proto.TrainArgs(),  # epochs come from custom_config
      eval_args=tfx.proto.EvalArgs(),
      custom_config={**custom_config, **code_and_weights(RUN_FN.rsplit('.', 1)[0], config)})
  for component in (transform, trainer):  # nothing is transformed or trained before the gate
    component.add_upstream_node(validation[-1])
  if config.data.max_eval_leaks is not None or config.data.max_label_issue_fraction is not None:
    trainer.add_upstream_node(insight)  # a gate that fails stops the run before training
  # TFX's Evaluator without a baseline of other classes or the candidate itself, and
  # not blessing while a class has no eval example, unless the config allows it.
  evaluator_class = (baseline_check.Evaluator if config.evaluation.allow_classes_without_eval
                     else class_coverage.Evaluator)
  baseline = latest_blessed or other_blessed_model(
      'baseline_model_resolver', trainer.outputs['model'], 'itself')
  evaluator = evaluator_class(
      examples=examples,
      model=trainer.outputs['model'],
      baseline_model=baseline.outputs['model'],
      eval_config=eval_config(config),
      module_path=EVALUATOR_MODULE)
  canary = serving_canary(config, trainer.outputs['model'], example_gen.outputs['examples'],
                          evaluator.outputs['blessing'])
  # As TFX's Pusher after InfraValidator: no `model`, it pushes the canary's warmed-up copy.
  pusher = AtomicPusher(
      model_blessing=evaluator.outputs['blessing'],
      infra_blessing=canary.outputs['blessing'],
      custom_config={'serving_config': {'model_name': config.model_name,
                                        'max_batch': config.serving.max_batch}},
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
      infra_blessing=canary.outputs['blessing'],
      data_validation=validation[-1].outputs['validation'],
      insight=insight.outputs['insight'],
      max_misclassified=config.evaluation.report_misclassified)
  inference = (batch_inference(config, trainer.outputs['model'], evaluator.outputs['blessing'])
               if config.inference.data else [])
  beam.skip_tfx_packaging_on_local_runners()
  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=_absolute(config.pipeline_root),
      components=[example_gen, insight, statistics_gen, schema_gen, *validation, *window,
                  transform, *([tuner] if tuner else []), *([warm_start] if warm_start else []),
                  # On Kubeflow one resolver gives both the warm-start model and the baseline.
                  trainer, *([baseline] if baseline is not warm_start else []), evaluator,
                  canary, pusher, evaluation_report, *inference],
      enable_cache=config.enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam.with_local_runner(config.beam_pipeline_args))
