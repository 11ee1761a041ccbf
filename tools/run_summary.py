"""What a run produced, read back from ML Metadata: metrics, blessing, pushed model."""

import dataclasses
import json
import os
from typing import Dict, List, Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from components.evaluator.baseline_check import BASELINE_NOT_USED
from components.report import evaluation_report, tfma_results
from components.report.evaluation_report import HTML_FILE, ModelReport
from components.inference.inference_table import CSV_FILE, PredictionTable
from components.validation.data_validation import DataValidationResult, anomaly_count, load_result
from components.inference.uncertainty import RANK_FILE
from components.insight.data_insight import FINDINGS_FILE, DataInsight
from components.insight.findings import describe_counts
from pipeline import definition
from pipeline.configs import PipelineConfig
from tools import component_results
from trainer import tflite_export


@dataclasses.dataclass
class RunSummary:
  metrics: Dict[str, Dict[str, float]]   # slice -> metric -> value
  blessed: Optional[bool]
  failures: List[str]                    # why the model was not blessed
  pushed_path: Optional[str]
  training_curves: Optional[str]
  executions: Dict[str, str]             # component -> COMPLETE / CACHED / ...
  evaluation_report: Optional[str] = None  # report.html of the EvaluationReport component
  inference: Optional[str] = None  # batch inference: where predictions.csv is, or why none
  tflite: Optional[str] = None  # model.tflite of the pushed version: size and agreement
  tuning: Optional[str] = None  # the Tuner's trials and the chosen one
  baseline_not_used: Optional[str] = None  # why the last blessed model was not compared
  unchanged_as: Optional[str] = None  # blessed, not pushed: this version holds the same model
  canary: Optional[str] = None  # the serving canary's result (checks passed or failed)
  data_anomalies: List[str] = dataclasses.field(default_factory=list)  # accepted (warn)
  schema: Optional[str] = None  # the curated schema file new data is checked against
  data_insight: Optional[str] = None  # findings of each kind and where findings.csv is
  label_next: Optional[str] = None  # batch inference's images ranked most uncertain first


def _store(config: PipelineConfig) -> metadata_store.MetadataStore:
  return metadata_store.MetadataStore(
      tfx.orchestration.metadata.sqlite_metadata_connection_config(
          os.path.abspath(config.metadata_path)))


def latest_run(store: metadata_store.MetadataStore) -> metadata_store_pb2.Context:
  """The newest `pipeline_run` context of a local run's ML Metadata."""
  runs = store.get_contexts_by_type('pipeline_run')
  if not runs:
    raise RuntimeError('No pipeline run recorded in the metadata store.')
  return max(runs, key=lambda c: c.create_time_since_epoch)


def _latest_run_artifacts(store):
  latest = latest_run(store)
  type_names = {t.id: t.name for t in store.get_artifact_types()}
  by_type = {}
  for artifact in store.get_artifacts_by_context(latest.id):
    by_type.setdefault(type_names[artifact.type_id], []).append(artifact)
  executions = {}
  exec_types = {t.id: t.name for t in store.get_execution_types()}
  for execution in store.get_executions_by_context(latest.id):
    name = exec_types[execution.type_id].rsplit('.', 1)[-1]
    executions[name] = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
  return by_type, executions


def latest_executions(config: PipelineConfig) -> Dict[str, str]:
  """Component -> execution state (COMPLETE, CACHED, ...) of the newest run."""
  return _latest_run_artifacts(_store(config))[1]


def _newest(artifacts):
  return max(artifacts, key=lambda a: a.id) if artifacts else None


def latest_run_summary(config: PipelineConfig) -> RunSummary:
  """Summarizes the newest pipeline run of this output folder."""
  by_type, executions = _latest_run_artifacts(_store(config))
  metrics, failures, blessed = {}, [], None
  evaluation = _newest(by_type.get('ModelEvaluation', []))
  if evaluation:
    # The same wording as the HTML report, from the same functions.
    metrics = tfma_results.load_metrics(evaluation.uri)
    decision = tfma_results.load_decision(evaluation.uri, None, None)
    blessed, failures = decision.blessed, decision.failures
  pushed = _newest(by_type.get('PushedModel', []))
  pushed_path, unchanged_as = (component_results.push_outcome(
      pushed, cached=executions.get('AtomicPusher') == 'CACHED') if pushed else (None, None))
  not_used = _custom_string(_newest(by_type.get('ModelBlessing', [])), BASELINE_NOT_USED)
  model_run = _newest(by_type.get('ModelRun', []))
  curves = os.path.join(model_run.uri, 'training_curves.png') if model_run else None
  report = _newest(by_type.get(ModelReport.TYPE_NAME, []))
  report_html = os.path.join(report.uri, HTML_FILE) if report else None
  canary = _newest(by_type.get('InfraBlessing', []))
  return RunSummary(metrics, blessed, failures, pushed_path,
                    curves if curves and os.path.exists(curves) else None, executions,
                    report_html if report_html and os.path.exists(report_html) else None,
                    _inference_line(_newest(by_type.get(PredictionTable.TYPE_NAME, []))),
                    _tflite_line(pushed_path or unchanged_as),
                    _tuning_line(_newest(by_type.get('TunerResults', []))), not_used,
                    unchanged_as, _custom_string(canary, 'canary'),
                    _data_anomalies(_newest(by_type.get(DataValidationResult.TYPE_NAME, []))),
                    definition.curated_schema_file(config) or None,
                    _insight_line(_newest(by_type.get(DataInsight.TYPE_NAME, []))),
                    _label_next(_newest(by_type.get(PredictionTable.TYPE_NAME, []))))


def _custom_string(artifact, name: str) -> Optional[str]:
  if artifact is None or name not in artifact.custom_properties:
    return None
  return artifact.custom_properties[name].string_value or None


def _data_anomalies(validation) -> List[str]:
  return load_result(validation.uri).get('anomalies', []) if validation else []


def _tuning_line(tuner_results) -> Optional[str]:
  trials = evaluation_report.load_trials(tuner_results.uri) if tuner_results else []
  if not trials:
    return None
  best = trials[0]
  values = ', '.join(f'{k}={v:.3g}' if isinstance(v, float) else f'{k}={v}'
                     for k, v in best.items() if k not in ('trial_id', 'score', 'trial_seconds'))
  return (f'{len(trials)} trials; chosen: trial {best["trial_id"]} (val accuracy '
          f'{best["score"]:.4f}): {values}')


def _insight_line(insight) -> Optional[str]:
  """'2 label_issue, 1 leak in 400 images: .../findings.csv' (None: no insight step)."""
  if insight is None:
    return None
  properties = insight.custom_properties
  counts = json.loads(properties['finding_counts'].string_value or '{}')
  return (f'{describe_counts(counts)} in {properties["num_images"].int_value} images: '
          f'{os.path.join(insight.uri, FINDINGS_FILE)}')


def _label_next(table) -> Optional[str]:
  path = os.path.join(table.uri, RANK_FILE) if table else None
  return path if path and os.path.exists(path) else None


def _tflite_line(pushed_path: Optional[str]) -> Optional[str]:
  check = tflite_export.read_check(pushed_path) if pushed_path else None
  if not check:
    return None
  return f'{os.path.join(pushed_path, check["file"])} ({tflite_export.describe(check)})'


def _inference_line(table) -> Optional[str]:
  """Where the batch predictions are, or why there are none (None: no batch inference)."""
  if table is None:
    return None
  properties = table.custom_properties
  if properties['blessed'].int_value != 1:
    return 'none: the model was not blessed, so the BulkInferrer ran no inference'
  return (f'{os.path.join(table.uri, CSV_FILE)} ({properties["num_predicted"].int_value} '
          f'images, {properties["num_skipped"].int_value} skipped)')


def format_summary(summary: RunSummary) -> str:
  lines = []
  if summary.data_anomalies:
    lines += ['', f'Data validation: {anomaly_count(len(summary.data_anomalies))}, trained anyway '
              '(data.validation: warn):'] + [f'  {line}' for line in summary.data_anomalies]
  names = sorted({n for m in summary.metrics.values() for n in m})
  lines += ['', '| slice | ' + ' | '.join(names) + ' |', '|---' * (len(names) + 1) + '|']
  for slice_name, values in sorted(summary.metrics.items(), key=lambda kv: kv[0] != 'Overall'):
    cells = [f'{values[n]:.4f}' if n in values else '' for n in names]
    lines.append(f'| {slice_name} | ' + ' | '.join(cells) + ' |')
  lines.append('')
  if summary.blessed:
    lines.append('Blessed: yes (passed all thresholds)')
  else:
    lines.append('Blessed: no' + (': ' + '; '.join(summary.failures) if summary.failures else ''))
  if summary.baseline_not_used:
    lines.append(f'Baseline not used: {summary.baseline_not_used}')
  if summary.canary:
    lines.append(f'Serving canary: {summary.canary}')
  if summary.unchanged_as:
    lines.append(f'Pushed model: {component_results.unchanged_text(summary.unchanged_as)}')
  else:
    lines.append(f'Pushed model: {summary.pushed_path or "nothing pushed"}')
  lines += [f'{label}: {value}' for label, value in (
      ('Training curves', summary.training_curves),
      ('Data insight', summary.data_insight),
      ('Evaluation report', summary.evaluation_report),
      ('Batch inference', summary.inference),
      ('What to label next (most uncertain first)', summary.label_next),
      ('TFLite', summary.tflite),
      ('Tuning', summary.tuning)) if value]
  if summary.schema:
    lines.append(f'Schema: {summary.schema} (curated: edit it; every run checks new data '
                 'against it)')
  return '\n'.join(lines)
