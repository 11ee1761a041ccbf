"""Two LocalDagRunner runs over weekly span folders: the second ingests only the new span,
trains on both (the training window), reuses Transform's analyzer cache and warm-starts
the head from the first run's blessed model."""

import json
import os

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from pipeline import local_runner
from pipeline.configs import load_config
from tools import demo_data, run_summary
from trainer import warm_start

pytestmark = pytest.mark.slow
PER_CLASS = 12


def _store(config):
  return metadata_store.MetadataStore(tfx.orchestration.metadata.sqlite_metadata_connection_config(
      os.path.abspath(config.metadata_path)))


def _execution(store, component):
  """The newest run's execution of `component` (its type name's last part)."""
  run = run_summary.latest_run(store)
  types = {t.id: t.name for t in store.get_execution_types()}
  [execution] = [e for e in store.get_executions_by_context(run.id)
                 if types[e.type_id].rsplit('.', 1)[-1] == component]
  return execution


def _artifacts(store, execution, key, event_type):
  events = [e for e in store.get_events_by_execution_ids([execution.id])
            if e.type == event_type and any(s.key == key for s in e.path.steps)]
  return store.get_artifacts_by_id([e.artifact_id for e in events])


def _span(artifact):
  return artifact.properties['span'].int_value


@pytest.fixture(scope='module')
def two_runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('spans')
  data = str(tmp / 'digits')
  config = load_config(overrides={
      'data.path': os.path.join(data, demo_data.SPAN_PATTERN), 'data.train_spans': 2,
      'output': str(tmp / 'run'), 'model.weights': 'none', 'model.image_size': 75,
      'model.dense_units': 16,
      'model.pooling': 'average', 'training.epochs': 2, 'training.warm_start_epochs': 1,
      'training.augment': False,
      'evaluation.min_accuracy': 0.0, 'evaluation.max_accuracy_drop': 1.0})
  demo_data.write_digit_spans(data, 1, per_class=PER_CLASS)
  local_runner.run(config)
  store = _store(config)
  first = {'examples': _artifacts(store, _execution(store, 'ImageFolderExampleGen'), 'examples',
                                  metadata_store_pb2.Event.OUTPUT),
           'cache': _artifacts(store, _execution(store, 'Transform'), 'updated_analyzer_cache',
                               metadata_store_pb2.Event.OUTPUT),
           'model': _artifacts(store, _execution(store, 'Trainer'), 'model',
                               metadata_store_pb2.Event.OUTPUT)}
  demo_data.write_digit_spans(data, 2, per_class=PER_CLASS)
  local_runner.run(config)
  return config, _store(config), first


def test_first_run_trains_on_its_one_span_from_scratch(two_runs):
  config, _, first = two_runs
  [examples] = first['examples']
  assert _span(examples) == 1  # the typed property, which TFX's span resolvers read
  assert examples.custom_properties['span'].int_value == 1
  [model] = first['model']
  model_run = os.path.join(os.path.dirname(os.path.dirname(model.uri)), 'model_run',
                           os.path.basename(model.uri))
  decision = warm_start.read_decision(model_run)
  assert decision is not None and not decision.used and 'no blessed model' in decision.reason
  with open(os.path.join(model_run, 'history.json')) as f:
    assert len(json.load(f)['loss']) == 2  # training.epochs


def test_second_run_ingests_only_the_new_span(two_runs):
  _, store, first = two_runs
  [examples] = _artifacts(store, _execution(store, 'ImageFolderExampleGen'), 'examples',
                          metadata_store_pb2.Event.OUTPUT)
  assert _span(examples) == 2 and examples.custom_properties['spans'].string_value == '2'
  written = (examples.custom_properties['num_train'].int_value +
             examples.custom_properties['num_eval'].int_value)
  assert written == 2 * PER_CLASS
  assert examples.id != first['examples'][0].id


def test_trainer_and_evaluator_read_both_spans(two_runs):
  _, store, first = two_runs
  for component in ('Trainer', 'Evaluator', 'Transform'):
    inputs = _artifacts(store, _execution(store, component), 'examples',
                        metadata_store_pb2.Event.INPUT)
    assert sorted(_span(a) for a in inputs) == [1, 2], component
    assert first['examples'][0].id in {a.id for a in inputs}  # span 1 as run 1 ingested it


def test_transform_reuses_the_first_runs_analyzer_cache(two_runs):
  _, store, first = two_runs
  transform = _execution(store, 'Transform')
  [cache_in] = _artifacts(store, transform, 'analyzer_cache', metadata_store_pb2.Event.INPUT)
  assert cache_in.id == first['cache'][0].id
  # Run 1's cache holds the analysis of span 1's train split (a dataset key named after
  # its files); run 2's adds span 2's.
  [span1] = first['examples']
  span1_key = f'examples-{os.path.basename(span1.uri)}-Split-train-'
  assert [e for e in os.listdir(cache_in.uri) if span1_key in e], os.listdir(cache_in.uri)
  [cache_out] = _artifacts(store, transform, 'updated_analyzer_cache',
                           metadata_store_pb2.Event.OUTPUT)
  assert len(os.listdir(cache_out.uri)) == 2, os.listdir(cache_out.uri)


def test_second_run_warm_starts_from_the_first_model(two_runs):
  _, store, first = two_runs
  trainer = _execution(store, 'Trainer')
  [base] = _artifacts(store, trainer, 'base_model', metadata_store_pb2.Event.INPUT)
  assert base.id == first['model'][0].id
  [model_run] = _artifacts(store, trainer, 'model_run', metadata_store_pb2.Event.OUTPUT)
  decision = warm_start.read_decision(model_run.uri)
  assert decision.used, decision.reason
  with open(os.path.join(model_run.uri, 'history.json')) as f:
    history = json.load(f)
  assert len(history['loss']) == 1  # training.warm_start_epochs
  assert history['lr'] == pytest.approx([1e-5])  # a tenth of training.learning_rate
  [report] = _artifacts(store, _execution(store, 'EvaluationReport'), 'report',
                        metadata_store_pb2.Event.OUTPUT)
  with open(os.path.join(report.uri, 'report.json')) as f:
    assert json.load(f)['warm_start']['used'] is True
  with open(os.path.join(report.uri, 'report.html')) as f:
    assert 'Warm start: the head starts from the blessed model' in f.read()
