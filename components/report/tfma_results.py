"""The Evaluator's output in plain words: metrics per slice, the thresholds it checked,
why a model was (not) blessed, and its confusion matrix plot."""

import re
from typing import Dict, List, Optional

import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.writers import eval_config_writer

from components.evaluator import class_coverage
from components.report.report_html import Decision
from contract.features import CLASS_NAME_KEY

_CONFUSION_PLOT = 'multiClassConfusionMatrixAtThresholds'


def _eval_result(evaluation_uri: str) -> tfma.EvalResult:
  """TFMA's result for the candidate model. With a baseline the output holds two models'
  results, and TFMA drops a plot asked for without a model name (with a warning)."""
  config = eval_config_writer.load_eval_run(evaluation_uri)[0]
  names = [spec.name for spec in config.model_specs if not spec.is_baseline] if config else []
  candidate = names[0] if len(names) == 1 and names[0] else None
  return tfma.load_eval_result(evaluation_uri, model_name=candidate)


def load_metrics(evaluation_uri: str) -> Dict[str, Dict[str, float]]:
  """slice ('Overall', 'class_name:cats', ...) -> metric (with ' (classId:1)' etc.) -> value."""
  metrics = {}
  for slice_key, slice_metrics in _eval_result(evaluation_uri).slicing_metrics:
    flat = {}
    for output in slice_metrics.values():
      for sub_key, values in output.items():
        for name, value in values.items():
          if 'doubleValue' in value:
            flat[_metric_name(name) + (f' ({sub_key})' if sub_key else '')] = value['doubleValue']
    metrics[tfma.slicer.stringify_slice_key(slice_key) or 'Overall'] = flat
  return metrics


def _metric_name(name: str) -> str:
  """'micro_average: true\n_auc' (TFMA's key of an aggregated metric) -> 'auc (micro average)'."""
  match = re.fullmatch(r'(\w+): true\n_(.+)', name)
  return f'{match.group(2)} ({match.group(1).replace("_", " ")})' if match else name


# The config field behind each accuracy threshold: (overall slice?, change threshold?).
_ACCURACY_FIELDS = {(True, False): 'evaluation.min_accuracy',
                    (True, True): 'evaluation.max_accuracy_drop',
                    (False, False): 'evaluation.min_class_accuracy',
                    (False, True): 'evaluation.max_class_accuracy_drop'}
_ACCURACY_METRIC = 'sparse_categorical_accuracy'


def _bound_text(threshold) -> str:
  if threshold.HasField('value_threshold'):
    bound = threshold.value_threshold
    parts = [f'>= {bound.lower_bound.value:.4g}' if bound.HasField('lower_bound') else '',
             f'<= {bound.upper_bound.value:.4g}' if bound.HasField('upper_bound') else '']
    return 'must be ' + ' and '.join(p for p in parts if p)
  change = threshold.change_threshold
  if (change.HasField('absolute') and not change.HasField('relative') and
      change.direction == tfma.MetricDirection.HIGHER_IS_BETTER):
    # The pipeline adds -1e-10 so that "no worse" passes on equality.
    return f'must not drop by more than {round(-change.absolute.value, 9):.4g} vs the baseline'
  direction = tfma.MetricDirection.Name(change.direction).lower().replace('_', ' ')
  allowed = change.absolute.value if change.HasField('absolute') else change.relative.value
  kind = 'absolute' if change.HasField('absolute') else 'relative'
  return (f'compared with the baseline ({direction}), {kind} change must be '
          f'>= {allowed:+.4g}')


def _slices_text(slicing_specs) -> str:
  """'overall', 'each class (class_name:<name>)' or 'each <keys> slice'."""
  texts = []
  for spec in slicing_specs:
    keys = list(spec.feature_keys) + [f'{k}={v}' for k, v in spec.feature_values.items()]
    if not keys:
      texts.append('overall')
    elif keys == [CLASS_NAME_KEY]:
      texts.append(f'each class ({CLASS_NAME_KEY}:<name>)')
    else:
      texts.append(f'each {", ".join(keys)} slice')
  return ' and '.join(texts)


def _single_thresholds(threshold):
  """A MetricThreshold split into its value and change parts."""
  for field in ('value_threshold', 'change_threshold'):
    if threshold.HasField(field):
      single = tfma.MetricThreshold()
      getattr(single, field).CopyFrom(getattr(threshold, field))
      yield single


def checked_thresholds(config: tfma.EvalConfig) -> List[str]:
  """Every threshold of the Evaluator's config, with the slices it applies to (change
  thresholds only with a baseline: the Evaluator drops them when there is none)."""
  texts = []
  for spec in config.metrics_specs:
    for metric in spec.metrics:
      for single in _single_thresholds(metric.threshold):
        texts.append(f'{metric.class_name}, every slice: {_bound_text(single)}')
      for per_slice in metric.per_slice_thresholds:
        for single in _single_thresholds(per_slice.threshold):
          texts.append(f'{metric.class_name}, {_slices_text(per_slice.slicing_specs)}: '
                       f'{_bound_text(single)}')
  return texts


def _failure_text(slice_key, failure) -> str:
  where = tfma.slicer.stringify_slice_key(
      tfma.slicer.deserialize_slice_key(slice_key)) or 'Overall'
  name = failure.metric_key.name
  is_diff = failure.metric_key.is_diff
  value = failure.metric_value.double_value.value
  what = f'{name} changed by {value:+.4f} vs the baseline' if is_diff else f'{name} = {value:.4f}'
  field = _ACCURACY_FIELDS[(where == 'Overall', is_diff)] if name == _ACCURACY_METRIC else ''
  return (f'{where}: {what}, but {_bound_text(failure.metric_threshold)}'
          + (f' ({field})' if field else ''))


def load_decision(evaluation_uri: str, blessed: Optional[bool],
                  baseline: Optional[str]) -> Decision:
  """Blessed or not, every threshold checked, and which ones failed."""
  validation = tfma.load_validation_result(evaluation_uri)
  config = _eval_result(evaluation_uri).config
  failures = [_failure_text(per_slice.slice_key, f)
              for per_slice in validation.metric_validations_per_slice
              for f in per_slice.failures]
  unevaluated = class_coverage.load_failures(evaluation_uri)
  failures += unevaluated
  if blessed is None:
    blessed = bool(validation.validation_ok) and not unevaluated
  return Decision(blessed=blessed,
                  thresholds=checked_thresholds(config), failures=failures,
                  baseline=baseline or None)


def load_confusion_matrix(evaluation_uri: str, num_classes: int) -> Optional[np.ndarray]:
  """[true class, predicted class] counts of TFMA's MultiClassConfusionMatrixPlot on the
  overall slice (the Evaluator's pass over the eval split); None if it was not computed."""
  for slice_key, slice_plots in _eval_result(evaluation_uri).plots:
    if slice_key:
      continue
    for output in slice_plots.values():
      for sub_key in output.values():
        matrices = sub_key.get(_CONFUSION_PLOT, {}).get('matrices', [])
        if matrices:
          return _matrix_from_entries(matrices[0].get('entries', []), num_classes)
  return None


def _matrix_from_entries(entries: List[Dict], num_classes: int) -> np.ndarray:
  """TFMA's entries (actualClassId, predictedClassId, numWeightedExamples) as a matrix;
  ids omitted from the JSON are 0, and no entry has predictedClassId -1 at threshold 0."""
  cells = [(int(e.get('actualClassId', 0)), int(e.get('predictedClassId', 0)),
            int(round(e.get('numWeightedExamples', 0.0)))) for e in entries]
  size = max([num_classes] + [max(a, p) + 1 for a, p, _ in cells])
  matrix = np.zeros((size, size), dtype=np.int64)
  for actual, predicted, count in cells:
    matrix[actual, predicted] += count
  return matrix
