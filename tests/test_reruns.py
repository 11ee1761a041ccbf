"""Reruns into one output folder: an unchanged rerun is cached end to end (warm start
on) and pushes nothing, and baselines are models of the same classes only (one
LocalDagRunner run after another, checked in ML Metadata, the serving folder and the
report). A rewritten weights file and a source edit change the cache keys of the
components that use them (tests/test_fingerprints.py)."""

import json
import os

import pytest

from pipeline import local_runner
from pipeline.configs import load_config
from tests.conftest import tree_digest
from tools import component_results, demo_data, run_summary as report
from tools.class_folder import load_class_folder
from trainer.model import write_calibrated_weights

pytestmark = pytest.mark.slow
# Execution types.
UPSTREAM = ('ImageFolderExampleGen', 'StatisticsGen', 'CuratedSchemaGen', 'Transform')
DOWNSTREAM = ('Trainer', 'Evaluator', 'ServingCanary', 'AtomicPusher', 'EvaluationReport')


def _run(config):
  local_runner.run(config)
  summary = report.latest_run_summary(config)
  with open(os.path.join(os.path.dirname(summary.evaluation_report), 'report.json')) as f:
    return summary, json.load(f)


def _evaluator_line(config):
  """The Evaluator's console line, from its newest output artifacts in ML Metadata."""
  by_type, _ = report._latest_run_artifacts(report._store(config))  # pylint: disable=protected-access
  return component_results.describe({
      'blessing': [max(by_type['ModelBlessing'], key=lambda a: a.id)],
      'evaluation': [max(by_type['ModelEvaluation'], key=lambda a: a.id)]})


def _states(summary, components):
  return {c: summary.executions.get(c) for c in components}


def test_reruns_keep_their_promises(tmp_path):
  data = str(tmp_path / 'digits')
  demo_data.write_digits(data, (0, 1), per_class=20)
  weights = str(tmp_path / 'notop.h5')
  write_calibrated_weights(weights, load_class_folder(data, 75, per_class=4).images)
  config = load_config(overrides={
      'data.path': data, 'output': str(tmp_path / 'run'), 'model.weights': weights,
      'model.image_size': 75, 'training.epochs': 1, 'training.augment': False,
      'evaluation.min_accuracy': 0.0, 'evaluation.max_accuracy_drop': 1.0,
      'evaluation.report_misclassified': 0,
      # Added class folders are a class-set change, which data validation stops by default;
      # this test accepts it (issue 22: a user who accepts the change trains from scratch).
      'data.validation': 'warn'})  # warm start on (the default)
  serving = config.serving_model_dir

  first, _ = _run(config)
  assert first.blessed and first.pushed_path and first.baseline_not_used is None
  pushed = tree_digest(serving)

  # Unchanged rerun: cached end to end (the warm-start model and the baseline pass over
  # the model the first run trained), so nothing is pushed again.
  unchanged, _ = _run(config)
  states = _states(unchanged, UPSTREAM + DOWNSTREAM)
  assert set(states.values()) == {'CACHED'}, states
  assert tree_digest(serving) == pushed
  assert unchanged.blessed and unchanged.pushed_path is None
  assert unchanged.unchanged_as == first.pushed_path
  assert 'unchanged, nothing pushed' in report.format_summary(unchanged)

  # The weights file rewritten at the same path: Transform stays cached, the Trainer and
  # everything after it run again; the new model is compared with the first (same classes).
  write_calibrated_weights(weights, load_class_folder(data, 75, per_class=4).images, seed=1)
  rewritten, data_json = _run(config)
  assert _states(rewritten, UPSTREAM) == dict.fromkeys(UPSTREAM, 'CACHED')
  assert _states(rewritten, DOWNSTREAM) == dict.fromkeys(DOWNSTREAM, 'COMPLETE')
  assert rewritten.baseline_not_used is None and data_json['baseline']
  assert data_json['warm_start']['used'] is False  # the first model saw these examples

  # One class folder added, then another (with the old model as baseline, TFMA failed on
  # a label past its outputs): each rerun completes, is judged on the absolute
  # thresholds alone, and says why the last blessed model was not its baseline.
  classes = ['one', 'zero']
  for digit, name in ((2, 'two'), (3, 'three')):
    demo_data.write_digits(data, (digit,), per_class=20)
    summary, data_json = _run(config)
    reason = f'classes changed from {classes} to {sorted(classes + [name])}'
    classes = sorted(classes + [name])
    assert summary.baseline_not_used == reason, summary.baseline_not_used
    assert data_json['baseline'] is None and data_json['baseline_not_used'] == reason
    assert f'Baseline not used: {reason}' in report.format_summary(summary)
    assert f'; baseline not used: {reason}' in _evaluator_line(config)
    assert 'not used: classes changed from' in open(summary.evaluation_report).read()
    assert summary.blessed and summary.pushed_path
    # New examples: the last model is offered for warm start, and refused for its classes.
    assert not data_json['warm_start']['used']
    assert data_json['warm_start']['reason'].startswith('the classes changed since'), data_json
    assert summary.metrics['Overall']['example_count'] > 0
  assert len(os.listdir(serving)) == 4 - (rewritten.pushed_path is None)
