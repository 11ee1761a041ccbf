"""All pipeline settings in one typed place.

A run is described by a `PipelineConfig`. It can be built in code, loaded from a
YAML file whose sections mirror the dataclasses below, and overridden from the
command line. Every value is checked before any expensive work starts; errors
name the field and the allowed values.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any, Dict, List, Mapping, Optional

import yaml

from contract.canary import CanaryConfig
from contract.settings import (FEATURE_PRECISIONS, LEARNING_RATE_DECAYS, MIN_IMAGE_SIZE,
                               POOLINGS, TFLITE_QUANTIZATIONS, TUNING_ALGORITHMS, WEIGHTS_CHOICES, ExportConfig, IngestOptions,
                               ModelConfig, ServingConfig, TrainingConfig, TuningConfig,
                               max_stored_bytes)
from pipeline import beam

VALIDATION_MODES = ('stop', 'warn')


class ConfigError(ValueError):
  """A configuration value is missing, unknown or out of range."""


@dataclasses.dataclass
class DataConfig:
  """Where the images come from and how they are split (defaults: IngestOptions)."""
  # A folder of class subfolders (optionally train/ and validation/), or a folder of
  # image TFRecords (tf.Example: `image` bytes, int64 `label`): a local path or a URI
  # Beam reads (gs://, s3://). It is listed when ExampleGen runs, never before.
  path: str = ''
  # Share of images sent to the eval split when the folder is not pre-split.
  eval_percent: int = IngestOptions.eval_percent
  # TFRecord input only: class names in label order, checked against the labels found
  # (image folders: the class folder names, found when ExampleGen runs).
  class_names: List[str] = dataclasses.field(default_factory=list)
  # Ingestion fails when more than this fraction of the files is unusable.
  max_skipped_fraction: float = IngestOptions.max_skipped_fraction
  # Images with more pixels than this are refused (decompression bombs).
  max_image_pixels: int = IngestOptions.max_image_pixels
  # Files larger than this are refused without being read whole.
  max_image_bytes: int = IngestOptions.max_image_bytes
  # At least this many output shards per split (more for large folders).
  num_shards: int = IngestOptions.num_shards
  # Images are stored with their long side at most this multiple of model.image_size
  # (larger ones downscaled and re-encoded once, at ingestion), so that Transform, the
  # Evaluator and the report decode small images and every stored image is within the
  # serving limits. 0 keeps every image as it is (then data.max_image_pixels and
  # data.max_image_bytes must be within the serving limits).
  max_side_multiple: int = 2
  # Train (and evaluate) on the newest N spans of a `path` with {SPAN} or {YYYY}{MM}{DD}:
  # earlier spans' Examples are reused, not re-ingested (Kubeflow: see README).
  train_spans: int = 1
  # A curated schema.pbtxt every span is checked against, imported by SchemaGen. Empty:
  # the one the first run inferred and wrote to <output>/schema/schema.pbtxt for editing.
  schema: str = ''
  # What anomalies do (schema violations, drift from the last accepted span): 'stop' the
  # run before training, or 'warn' and train anyway.
  validation: str = 'stop'
  # Largest L-infinity distance between the class shares of the last accepted span and
  # the new one (0.2: no class's share may move by more than 20 points).
  max_class_drift: float = 0.2
  # Largest Jensen-Shannon divergence (0..1) of the stored image height and width.
  max_size_drift: float = 0.3
  # Data insight gates (null = off): stop the run before the Trainer when more eval
  # images than this have a near-copy in train, or when more than this fraction of
  # the images look mislabeled (see findings.csv of the DataInsightGen step).
  max_eval_leaks: Optional[int] = None
  max_label_issue_fraction: Optional[float] = None


# Evaluation settings that are fractions (accuracy bounds): each must lie in [0, 1].
FRACTION_FIELDS = ('min_accuracy', 'max_accuracy_drop', 'min_class_accuracy',
                   'max_class_accuracy_drop')


@dataclasses.dataclass
class EvaluationConfig:
  """Blessing thresholds. The `min_accuracy`/`max_accuracy_drop` pair applies to the
  overall eval accuracy only; the optional `*_class_*` pair applies to each true-class
  slice (`label:0`, `label:1`, ...). None (YAML `null`, the default) = not checked."""
  # Lower bound on overall eval accuracy for a model to be blessed.
  min_accuracy: float = 0.6
  # How much overall accuracy may drop against the last blessed model (0 = no worse).
  max_accuracy_drop: float = 0.0
  # Lower bound on the accuracy of every single class.
  min_class_accuracy: Optional[float] = None
  # How much any single class's accuracy may drop against the last blessed model.
  max_class_accuracy_drop: Optional[float] = None
  # How many of the most confidently misclassified eval images the report shows.
  report_misclassified: int = 16
  # Bless a model although a class of its vocabulary has no eval example (its accuracy
  # was never measured). Off: such a model is not blessed, and the report says why.
  allow_classes_without_eval: bool = False


@dataclasses.dataclass
class InferenceConfig:
  """Batch inference in the pipeline (off by default)."""
  # A folder of unlabeled images (walked recursively): when set, the pipeline runs TFX's
  # BulkInferrer on the model the Evaluator blessed and writes predictions.csv.
  data: str = ''


@dataclasses.dataclass
class KubeflowConfig:
  """The Trainer's (and Tuner's) pod in the compiled Kubeflow V2 / Vertex AI spec; local
  runs ignore it. 0 / '' = the platform's default."""
  # An accelerator for the Trainer, as the platform names it: 'NVIDIA_TESLA_T4' or
  # 'NVIDIA_L4' on Vertex AI, 'nvidia.com/gpu' on Kubeflow Pipelines.
  trainer_accelerator: str = ''
  trainer_accelerator_count: int = 1
  trainer_cpu: float = 0.0         # vCPU limit
  trainer_memory_gb: float = 0.0   # memory limit, GB as the spec counts


@dataclasses.dataclass
class PipelineConfig:
  pipeline_name: str = 'image-transfer'
  model_name: str = 'image_classifier'
  # Everything a run writes lives under this folder.
  output: str = 'runs/default'
  # Beam arguments for Transform, StatisticsGen and Evaluator (without --runner:
  # FnApiRunner, see pipeline/beam.py).
  beam_pipeline_args: List[str] = dataclasses.field(default_factory=beam.in_memory)
  enable_cache: bool = True
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
  evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
  serving: ServingConfig = dataclasses.field(default_factory=ServingConfig)
  inference: InferenceConfig = dataclasses.field(default_factory=InferenceConfig)
  canary: CanaryConfig = dataclasses.field(default_factory=CanaryConfig)
  export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
  tuning: TuningConfig = dataclasses.field(default_factory=TuningConfig)
  kubeflow: KubeflowConfig = dataclasses.field(default_factory=KubeflowConfig)

  # Derived locations -------------------------------------------------------
  @property
  def pipeline_root(self) -> str:
    return os.path.join(self.output, 'pipeline_root')

  @property
  def curated_schema_path(self) -> str:
    """Where the first run writes its inferred schema for people to edit."""
    return os.path.join(self.output, 'schema', 'schema.pbtxt')

  @property
  def metadata_path(self) -> str:
    return os.path.join(self.output, 'metadata.db')

  @property
  def serving_model_dir(self) -> str:
    return os.path.join(self.output, 'serving_model', self.model_name)

  @property
  def max_stored_side(self) -> int:
    """The long side images are stored at, at most (0: as they come)."""
    return self.data.max_side_multiple * self.model.image_size

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  def validate(self) -> 'PipelineConfig':
    """Checks value ranges that types alone do not catch; returns self."""
    _check(self.data.path, 'data.path', 'a folder of images or TFRecords')
    _check(0 < self.data.eval_percent < 100, 'data.eval_percent',
           'an integer between 1 and 99')
    _check_fraction(self.data.max_skipped_fraction, 'data.max_skipped_fraction')
    _check(self.data.num_shards >= 1, 'data.num_shards', 'an integer >= 1')
    _check(self.data.train_spans >= 1, 'data.train_spans', 'an integer >= 1')
    _check(self.data.max_image_pixels > 0, 'data.max_image_pixels',
           'a positive integer')
    _check(self.data.max_image_bytes > 0, 'data.max_image_bytes', 'a positive integer')
    _check(self.data.max_side_multiple >= 0, 'data.max_side_multiple',
           'an integer >= 0 (0 keeps images as they come)')
    _check(self.data.validation in VALIDATION_MODES, 'data.validation',
           ' or '.join(map(repr, VALIDATION_MODES)))
    for name in ('max_class_drift', 'max_size_drift'):
      _check(0.0 <= getattr(self.data, name) <= 1.0, f'data.{name}', 'a number between 0 and 1')
    _check(self.data.max_eval_leaks is None or self.data.max_eval_leaks >= 0,
           'data.max_eval_leaks', 'null (off) or an integer >= 0')
    _check(self.data.max_label_issue_fraction is None or
           0 <= self.data.max_label_issue_fraction <= 1,
           'data.max_label_issue_fraction', 'null (off) or a number between 0 and 1')
    _check(self.model.image_size >= MIN_IMAGE_SIZE, 'model.image_size',
           f'an integer >= {MIN_IMAGE_SIZE} (InceptionV3 needs at least '
           f'{MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE})')
    weights = self.model.weights
    _check(weights in WEIGHTS_CHOICES or weights.endswith('.h5'), 'model.weights',
           "'imagenet', 'none' or a path to an .h5 weights file")
    _check(self.model.dense_units >= 1, 'model.dense_units', 'an integer >= 1')
    _check(0.0 <= self.model.dropout < 1.0, 'model.dropout', 'a number in [0, 1)')
    _check(self.model.pooling in POOLINGS, 'model.pooling', ' or '.join(map(repr, POOLINGS)))
    _check(self.model.feature_precision in FEATURE_PRECISIONS, 'model.feature_precision',
           ' or '.join(map(repr, FEATURE_PRECISIONS)))
    _check(self.training.epochs >= 1, 'training.epochs', 'an integer >= 1')
    _check(self.training.batch_size >= 1, 'training.batch_size', 'an integer >= 1')
    _check(self.training.augmented_views >= 1, 'training.augmented_views', 'an integer >= 1')
    _check(self.training.warm_start_epochs >= 1, 'training.warm_start_epochs',
           'an integer >= 1')
    _check(self.training.learning_rate > 0, 'training.learning_rate',
           'a positive number')
    _check(self.training.learning_rate_decay in LEARNING_RATE_DECAYS,
           'training.learning_rate_decay', ' or '.join(map(repr, LEARNING_RATE_DECAYS)))
    self._validate_fine_tuning()
    for name in FRACTION_FIELDS:
      _check_fraction(getattr(self.evaluation, name), f'evaluation.{name}')
    _check(self.evaluation.report_misclassified >= 0,
           'evaluation.report_misclassified', 'an integer >= 0')
    for name in ('max_image_bytes', 'max_image_pixels', 'max_batch'):
      _check(getattr(self.serving, name) >= 1, f'serving.{name}', 'an integer >= 1')
    self._validate_stored_size()
    for name in ('max_load_seconds', 'max_memory_mib', 'tolerance', 'num_examples',
                 'timed_requests', 'timeout_seconds'):
      _check(getattr(self.canary, name) > 0, f'canary.{name}', 'a positive number')
    _check(self.export.tflite_quantization in TFLITE_QUANTIZATIONS, 'export.tflite_quantization',
           ' or '.join(map(repr, TFLITE_QUANTIZATIONS)))
    _check(self.export.tflite_representative_images >= 1,
           'export.tflite_representative_images', 'an integer >= 1')
    self._validate_tuning()
    _check(self.kubeflow.trainer_accelerator_count >= 1, 'kubeflow.trainer_accelerator_count',
           'an integer >= 1')
    for name in ('trainer_cpu', 'trainer_memory_gb'):
      _check(getattr(self.kubeflow, name) >= 0, f'kubeflow.{name}', 'a number >= 0 (0 = default)')
    _check(self.pipeline_name.replace('-', '').replace('_', '').isalnum(),
           'pipeline_name', 'letters, digits, - and _')
    return self


  def _validate_stored_size(self) -> None:
    """Every stored image must pass the serving signatures' limits: the Evaluator and the
    BulkInferrer send stored images to them."""
    side, serving = self.max_stored_side, self.serving
    if side:
      _check(side * side <= serving.max_image_pixels, 'data.max_side_multiple',
             f'a multiple whose stored images ({side}x{side} = {side * side:,} pixels at '
             f'model.image_size {self.model.image_size}) fit serving.max_image_pixels='
             f'{serving.max_image_pixels:,}')
      _check(max_stored_bytes(side) <= serving.max_image_bytes, 'data.max_side_multiple',
             f'a multiple whose stored images (up to {max_stored_bytes(side):,} bytes at '
             f'{side} px) fit serving.max_image_bytes={serving.max_image_bytes:,}')
      return
    _check(self.data.max_image_pixels <= serving.max_image_pixels, 'data.max_image_pixels',
           f'at most serving.max_image_pixels={serving.max_image_pixels:,} when '
           'data.max_side_multiple is 0 (images kept as they come must pass the serving '
           'limits), or a data.max_side_multiple > 0')
    _check(self.data.max_image_bytes <= serving.max_image_bytes, 'data.max_image_bytes',
           f'at most serving.max_image_bytes={serving.max_image_bytes:,} when '
           'data.max_side_multiple is 0, or a data.max_side_multiple > 0')

  def _validate_tuning(self) -> None:
    """The search space is well formed; trials need the feature cache's conditions."""
    tuning = self.tuning
    if not tuning.enabled:
      return
    _check(not self.training.augment and self.training.feature_cache, 'training.augment',
           'false with tuning.enabled (trials train the head on cached backbone features; '
           'training.feature_cache must stay true)')
    _check(tuning.trials >= 1, 'tuning.trials', 'an integer >= 1')
    _check(tuning.algorithm in TUNING_ALGORITHMS, 'tuning.algorithm',
           ' or '.join(map(repr, TUNING_ALGORITHMS)))
    _check(tuning.epochs >= 0, 'tuning.epochs', 'an integer >= 0 (0 = training.epochs)')
    _check(0 < tuning.validation_percent < 100, 'tuning.validation_percent',
           'an integer between 1 and 99 (the share of the train split that scores trials)')
    _check(tuning.dense_units and min(tuning.dense_units) >= 1, 'tuning.dense_units',
           'a list of integers >= 1')
    _check(len(tuning.dropout) == 2 and 0 <= tuning.dropout[0] <= tuning.dropout[1] < 1,
           'tuning.dropout', '[min, max] with 0 <= min <= max < 1')
    _check(len(tuning.learning_rate) == 2 and
           0 < tuning.learning_rate[0] <= tuning.learning_rate[1],
           'tuning.learning_rate', '[min, max] with 0 < min <= max')
    _check(tuning.pooling and set(tuning.pooling) <= set(POOLINGS), 'tuning.pooling',
           f'a list of {" and ".join(map(repr, POOLINGS))}')

  def _validate_fine_tuning(self) -> None:
    """fine_tune_from and fine_tune_epochs are set together; the rate is positive."""
    training = self.training
    _check(training.fine_tune_epochs >= 0, 'training.fine_tune_epochs', 'an integer >= 0')
    _check(training.fine_tune_epochs == 0 or training.fine_tune_from,
           'training.fine_tune_from',
           "a backbone layer name (e.g. 'mixed6') when training.fine_tune_epochs > 0")
    _check(not training.fine_tune_from or training.fine_tune_epochs >= 1,
           'training.fine_tune_epochs',
           "an integer >= 1 when training.fine_tune_from is set ('' turns fine-tuning off)")
    _check(training.fine_tune_learning_rate > 0, 'training.fine_tune_learning_rate',
           'a positive number (e.g. 1e-5)')


def _check(ok: Any, field: str, allowed: str) -> None:
  if not ok:
    raise ConfigError(f'Invalid value for {field}: expected {allowed}.')


def _check_fraction(value: Optional[float], field: str) -> None:
  """A fraction or accuracy bound lies in [0, 1] (None: not checked); a value that looks
  like a percentage says so."""
  if value is None or 0.0 <= value <= 1.0:
    return
  hint = f' ({value:g} looks like a percentage: write {value / 100:g})' if 1 < value <= 100 else ''
  raise ConfigError(f'Invalid value for {field}: expected a number between 0 and 1, '
                    f'got {value:g}{hint}.')


def _coerce(value: Any, hint: Any, field: str) -> Any:
  """Checks (and gently converts) one YAML value against a type hint."""
  origin = typing.get_origin(hint)
  if origin is typing.Union:  # Optional[X]: null or an X
    (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
    return None if value is None else _coerce(value, inner, field)
  if dataclasses.is_dataclass(hint):
    if not isinstance(value, Mapping):
      raise ConfigError(f'{field} must be a mapping of its settings.')
    return _from_mapping(hint, value, prefix=f'{field}.')
  if origin in (list, List):
    (item_type,) = typing.get_args(hint)
    if not isinstance(value, list):
      raise ConfigError(f'{field} must be a list of {item_type.__name__}.')
    return [_coerce(v, item_type, f'{field}[{i}]') for i, v in enumerate(value)]
  if hint is bool:
    if not isinstance(value, bool):
      raise ConfigError(f'{field} must be true or false, got {value!r}.')
    return value
  if hint is int:
    if isinstance(value, bool) or not isinstance(value, int):
      raise ConfigError(f'{field} must be an integer, got {value!r}.')
    return value
  if hint is float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ConfigError(f'{field} must be a number, got {value!r}.')
    return float(value)
  if hint is str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
      raise ConfigError(f'{field} must be a string, got {value!r}.')
    return str(value)
  raise ConfigError(f'{field}: unsupported type {hint}.')


def _from_mapping(cls: Any, values: Mapping[str, Any], prefix: str = '') -> Any:
  hints = typing.get_type_hints(cls)
  fields = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - fields)
  if unknown:
    raise ConfigError(
        f'Unknown config key {prefix}{unknown[0]}; allowed keys'
        f'{" in " + prefix.rstrip(".") if prefix else ""}: {", ".join(sorted(fields))}.')
  kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in values.items()}
  return cls(**kwargs)


def config_from_dict(values: Mapping[str, Any]) -> PipelineConfig:
  """Builds a config from nested plain values (e.g. parsed YAML)."""
  return _from_mapping(PipelineConfig, values or {})


def load_config(path: Optional[str] = None,
                overrides: Optional[Mapping[str, Any]] = None) -> PipelineConfig:
  """Loads a YAML file (optional) and applies dotted overrides like {'model.weights': 'none'}."""
  values: Dict[str, Any] = {}
  if path:
    try:
      with open(path) as f:
        values = yaml.safe_load(f) or {}
    except OSError as e:
      raise ConfigError(f'Cannot read config file {path}: {e.strerror}.') from e
    except yaml.YAMLError as e:
      raise ConfigError(f'Config file {path} is not valid YAML: {e}') from e
    if not isinstance(values, dict):
      raise ConfigError(f'Config file {path} must hold a mapping of settings.')
  for dotted, value in (overrides or {}).items():
    if value is None:
      continue
    node = values
    *parents, leaf = dotted.split('.')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return config_from_dict(values)
