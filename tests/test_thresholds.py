"""Blessing thresholds: overall bounds vs optional per-class bounds, checked by TFMA's own
validator on synthetic metrics (no pipeline run), and the words the report uses."""

# pylint: disable=protected-access
import pytest
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.metrics import metric_types

from components.report import tfma_results
from pipeline.configs import ConfigError, load_config
from pipeline.definition import eval_config

ACCURACY = metric_types.MetricKey(name='sparse_categorical_accuracy')
CHANGE = metric_types.MetricKey(name='sparse_categorical_accuracy', is_diff=True)
OVERALL = ()


def _class(name: str):
  return (('class_name', name),)


def _failures(evaluation: dict, slice_key, accuracy: float, change: float = 0.0):
  """TFMA's verdict on one slice's accuracy (and its change vs a baseline), in words."""
  config = load_config(overrides={'data.path': 'unused',
                                  **{f'evaluation.{k}': v for k, v in evaluation.items()}})
  result = metrics_validator.validate_metrics(
      (slice_key, {ACCURACY: accuracy, CHANGE: change}), eval_config(config.validate()))
  texts = [tfma_results._failure_text(s.slice_key, f)
           for s in result.metric_validations_per_slice for f in s.failures]
  assert result.validation_ok == (not texts)
  return texts


def test_min_accuracy_bounds_the_overall_slice_only():
  """The new user's case: overall 0.79, one class at 0.55, `min_accuracy: 0.6`."""
  assert _failures({'min_accuracy': 0.6}, OVERALL, 0.79) == []
  assert _failures({'min_accuracy': 0.6}, _class('three'), 0.55) == []
  assert _failures({'min_accuracy': 0.8}, OVERALL, 0.79) == [
      'Overall: sparse_categorical_accuracy = 0.7900, but must be >= 0.8 '
      '(evaluation.min_accuracy)']


def test_min_class_accuracy_names_the_failing_class():
  bounds = {'min_accuracy': 0.6, 'min_class_accuracy': 0.6}
  assert _failures(bounds, OVERALL, 0.79) == []
  assert _failures(bounds, _class('three'), 0.61) == []
  assert _failures(bounds, _class('three'), 0.55) == [
      'class_name:three: sparse_categorical_accuracy = 0.5500, but must be >= 0.6 '
      '(evaluation.min_class_accuracy)']


def test_change_thresholds_split_the_same_way():
  bounds = {'max_accuracy_drop': 0.0, 'max_class_accuracy_drop': 0.1}
  assert _failures(bounds, OVERALL, 0.9, change=0.0) == []  # no worse passes
  assert _failures(bounds, OVERALL, 0.9, change=-0.01) == [
      'Overall: sparse_categorical_accuracy changed by -0.0100 vs the baseline, but must '
      'not drop by more than 0 vs the baseline (evaluation.max_accuracy_drop)']
  assert _failures(bounds, _class('one'), 0.9, change=-0.05) == []
  assert _failures(bounds, _class('zero'), 0.9, change=-0.2) == [
      'class_name:zero: sparse_categorical_accuracy changed by -0.2000 vs the baseline, but must '
      'not drop by more than 0.1 vs the baseline (evaluation.max_class_accuracy_drop)']
  # Without a per-class drop bound, a class may drop as long as the overall does not.
  assert _failures({'max_accuracy_drop': 0.0}, _class('zero'), 0.9, change=-0.2) == []


def test_checked_thresholds_say_which_slices():
  config = load_config(overrides={'data.path': 'unused', 'evaluation.min_accuracy': 0.8,
                                  'evaluation.min_class_accuracy': 0.5})
  assert tfma_results.checked_thresholds(eval_config(config)) == [
      'SparseCategoricalAccuracy, overall: must be >= 0.8',
      'SparseCategoricalAccuracy, overall: must not drop by more than 0 vs the baseline',
      'SparseCategoricalAccuracy, each class (class_name:<name>): must be >= 0.5']


def test_class_bounds_are_optional_in_yaml(tmp_path):
  path = tmp_path / 'c.yaml'
  path.write_text('data: {path: x}\nevaluation: {min_class_accuracy: null, '
                  'max_class_accuracy_drop: 0.05}\n')
  evaluation = load_config(str(path)).validate().evaluation
  assert evaluation.min_class_accuracy is None and evaluation.max_class_accuracy_drop == 0.05
  path.write_text('evaluation: {min_class_accuracy: high}\n')
  with pytest.raises(ConfigError, match='evaluation.min_class_accuracy must be a number'):
    load_config(str(path))
  with pytest.raises(ConfigError, match='evaluation.max_class_accuracy_drop'):
    load_config(overrides={'data.path': 'x',
                           'evaluation.max_class_accuracy_drop': -0.1}).validate()
