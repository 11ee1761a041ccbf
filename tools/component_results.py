"""One short line per component execution: its key result, read from its output artifacts.

Dispatches on output keys (`examples`, `statistics`, `schema`, `anomalies`, `validation`,
`transformed_examples`, `model_run`, `evaluation`, `blessing` (the serving canary's
InfraBlessing), `pushed_model`, `report`, `insight`), so ImportExampleGen and the image ExampleGen are
described by the same code.
"""

import json
import os
from typing import Callable, Dict, List, Optional, Tuple

from ml_metadata.proto import metadata_store_pb2

Artifact = metadata_store_pb2.Artifact
Artifacts = Dict[str, List[Artifact]]  # output key -> artifacts


def _int(artifact: Artifact, name: str) -> Optional[int]:
  prop = artifact.custom_properties.get(name)
  return prop.int_value if prop is not None and prop.HasField('int_value') else None


def _string(artifact: Artifact, name: str) -> Optional[str]:
  prop = artifact.custom_properties.get(name)
  return prop.string_value if prop is not None and prop.HasField('string_value') else None


def _size(num_bytes: float) -> str:
  for unit in ('B', 'KB', 'MB', 'GB'):
    if num_bytes < 1000 or unit == 'GB':
      return f'{num_bytes:.0f} {unit}' if unit == 'B' else f'{num_bytes:.1f} {unit}'
    num_bytes /= 1000
  return ''


def _folder_bytes(uri: str) -> int:
  return sum(os.path.getsize(os.path.join(root, f))
             for root, _, files in os.walk(uri) for f in files)


def _span_prefix(examples: Artifact) -> str:
  """'span 2: ' (or 'spans 1,2: ' for a window ingested at once) for span folders; ''."""
  spans = _string(examples, 'spans')
  if not spans or spans == '0':
    return ''
  return f'span{"s" if "," in spans else ""} {spans}: '


def _examples(outputs: Artifacts) -> str:
  [examples] = outputs['examples']
  counts = [_int(examples, k) for k in ('num_train', 'num_eval', 'num_skipped')]
  if None in counts:
    return f'splits {", ".join(json.loads(_string(examples, "split_names") or "[]"))}'
  line = f'{_span_prefix(examples)}{counts[0]:,} train, {counts[1]:,} eval examples, {counts[2]:,} skipped'
  extras = [(_int(examples, key), label) for key, label in (
      ('num_ignored', 'ignored (OS/tool files)'), ('num_downscaled', 'downscaled'),
      ('num_duplicate_groups', 'groups of identical files'))]
  return line + ''.join(f', {n:,} {label}' for n, label in extras if n)


def _statistics(outputs: Artifacts) -> str:
  from tensorflow_metadata.proto.v0 import statistics_pb2  # pylint: disable=g-import-not-at-top
  [statistics] = outputs['statistics']
  counts = []
  for split in sorted(os.listdir(statistics.uri)):
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    with open(os.path.join(statistics.uri, split, 'FeatureStats.pb'), 'rb') as f:
      stats.ParseFromString(f.read())
    counts.append(f'{split.replace("Split-", "")} {stats.datasets[0].num_examples:,}')
  return 'examples counted: ' + ', '.join(counts)


def _schema(outputs: Artifacts) -> str:
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from tensorflow_metadata.proto.v0 import schema_pb2  # pylint: disable=g-import-not-at-top
  [schema] = outputs['schema']
  with open(os.path.join(schema.uri, 'schema.pbtxt')) as f:
    parsed = text_format.Parse(f.read(), schema_pb2.Schema())
  editable, imported = _string(schema, 'editable_copy'), _string(schema, 'imported_from')
  return (f'{len(parsed.feature)} features: {", ".join(f.name for f in parsed.feature)}'
          + (f'; editable copy written to {editable}' if editable else '')
          + (f'; imported from {imported}' if imported else ''))


def _anomalies(outputs: Artifacts) -> str:
  from tensorflow_metadata.proto.v0 import anomalies_pb2  # pylint: disable=g-import-not-at-top
  [anomalies] = outputs['anomalies']
  features = set()
  for split in sorted(os.listdir(anomalies.uri)):
    with open(os.path.join(anomalies.uri, split, 'SchemaDiff.pb'), 'rb') as f:
      found = anomalies_pb2.Anomalies.FromString(f.read())
    features.update(found.anomaly_info)
    if found.dataset_anomaly_info.reason:
      features.add('(data set)')
  if not features:
    return 'no anomalies against the schema'
  return f'anomalies against the schema in {", ".join(sorted(features))}'


def _validation(outputs: Artifacts) -> str:
  # pylint: disable-next=g-import-not-at-top
  from components.validation.data_validation import anomaly_count, load_result
  [validation] = outputs['validation']
  result = load_result(validation.uri)
  drift = ', '.join(f'{d["feature"]} {d["value"]:.2f}' for d in result.get('drift', []))
  found = len(result.get('anomalies', []))
  head = (f'{anomaly_count(found)}, training anyway '
          '(data.validation: warn)' if found else 'no anomalies')
  return head + (f'; drift from the last accepted span: {drift}' if drift else
                 f'; {result["note"]}' if result.get('note') else '')


def _transformed(outputs: Artifacts) -> str:
  [transformed] = outputs['transformed_examples']
  return f'{_size(_folder_bytes(transformed.uri))} of transformed examples'


def _analyzer_cache(outputs: Artifacts) -> str:
  """Transform over a training window (nothing materialized): its analyzer cache."""
  [cache] = outputs['updated_analyzer_cache']
  datasets = len(os.listdir(cache.uri)) if os.path.isdir(cache.uri) else 0
  return f'analyzer cache of {datasets} dataset{"s" if datasets != 1 else ""} (kept for the next run)'


def _trained(outputs: Artifacts) -> str:
  [model_run] = outputs['model_run']
  with open(os.path.join(model_run.uri, 'history.json')) as f:
    history: Dict[str, List[float]] = json.load(f)
  epochs = len(next(iter(history.values()), []))
  final = ', '.join(f'{k} {v[-1]:.4f}' for k, v in sorted(history.items())
                    if k.startswith('val_') and v)
  from trainer import warm_start  # pylint: disable=g-import-not-at-top
  decision = warm_start.read_decision(model_run.uri)
  started = '' if decision is None else (
      '; warm start from the blessed model' if decision.used
      else f'; from scratch: {decision.reason}')
  return (f'{epochs} epoch{"s" if epochs != 1 else ""}' + (f', {final}' if final else '')
          + started)


def _blessing(outputs: Artifacts) -> str:
  from components.evaluator.baseline_check import BASELINE_NOT_USED  # pylint: disable=g-import-not-at-top
  from components.report.evaluation_report import load_decision  # pylint: disable=g-import-not-at-top
  [blessing] = outputs['blessing']
  [evaluation] = outputs['evaluation']
  decision = load_decision(evaluation.uri, bool(_int(blessing, 'blessed')), None)
  if decision.blessed:
    text = 'blessed (passed all thresholds)'
  else:
    text = 'not blessed: ' + ('; '.join(decision.failures) or 'no threshold passed')
  not_used = _string(blessing, BASELINE_NOT_USED)
  return text + (f'; baseline not used: {not_used}' if not_used else '')


def _canary(outputs: Artifacts) -> str:
  """The serving canary's line (components/serving/serving_canary.py writes it)."""
  [blessing] = outputs['blessing']
  return _string(blessing, 'canary') or ('blessed' if _int(blessing, 'blessed') else 'not blessed')


def push_outcome(pushed: Artifact, cached: bool = False) -> Tuple[Optional[str], Optional[str]]:
  """(pushed_to, unchanged_as) of a PushedModel: the version folder written now, or the one
  already holding the same model. `cached`: the Pusher's execution was reused, so what it
  pushed is already there and nothing was pushed now."""
  destination = _string(pushed, 'pushed_destination') if _int(pushed, 'pushed') == 1 else None
  unchanged_as = _string(pushed, 'unchanged_as')  # atomic_pusher.UNCHANGED_AS (no TFX import here)
  if cached:
    return None, destination or unchanged_as
  return destination, unchanged_as


def unchanged_text(version_dir: str) -> str:
  return f'unchanged, nothing pushed ({version_dir} holds the same model)'


def _pushed(outputs: Artifacts, cached: bool = False) -> str:
  [pushed] = outputs['pushed_model']
  pushed_to, unchanged_as = push_outcome(pushed, cached)
  if pushed_to:
    return f'pushed to {pushed_to}'
  if unchanged_as:
    return unchanged_text(unchanged_as)
  return 'nothing pushed (the model was not blessed by the Evaluator and the serving canary)'


def _report(outputs: Artifacts) -> str:
  [report] = outputs['report']
  missed = _int(report, 'num_misclassified')
  return os.path.join(report.uri, 'report.html') + (
      f' ({missed} misclassified)' if missed is not None else '')


def _insight(outputs: Artifacts) -> str:
  from components.insight.data_insight import FINDINGS_FILE  # pylint: disable=g-import-not-at-top
  from components.insight.findings import describe_counts  # pylint: disable=g-import-not-at-top
  [insight] = outputs['insight']
  counts = json.loads(_string(insight, 'finding_counts') or '{}')
  return (f'{describe_counts(counts)} in {_int(insight, "num_images"):,} images: '
          f'{os.path.join(insight.uri, FINDINGS_FILE)}')


# Output key -> description; the first key a component has decides.
DESCRIBERS: Dict[str, Callable[[Artifacts], str]] = {
    'examples': _examples, 'statistics': _statistics, 'schema': _schema,
    'anomalies': _anomalies, 'validation': _validation,
    'transformed_examples': _transformed, 'updated_analyzer_cache': _analyzer_cache,
    'model_run': _trained, 'evaluation': _blessing, 'blessing': _canary,
    'pushed_model': _pushed, 'report': _report, 'insight': _insight,
}


def describe(outputs: Artifacts, cached: bool = False) -> str:
  """The key result, or '' when no describer applies or reading the outputs fails.
  `cached`: the outputs are an earlier execution's (a cached push pushed nothing now)."""
  for key, describer in DESCRIBERS.items():
    if key in outputs:
      try:
        return _pushed(outputs, cached) if key == 'pushed_model' else describer(outputs)
      except Exception as e:  # pylint: disable=broad-except  (a summary never fails a run)
        return f'(result not readable: {e})'
  return ''
