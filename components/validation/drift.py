"""What changed between two spans, measured by TFDV, and one readable line per anomaly.

`compare` asks TFDV's own comparators (`tfdv.validate_statistics(...,
previous_statistics=...)`, as TFX's DistributionValidator does) for the L-infinity
distance between the class shares and the Jensen-Shannon divergence of the stored image
height and width; `class_set_change` names classes that appeared or disappeared;
`schema_lines` words the ExampleValidator's anomalies. Pure functions over statistics
and anomalies protos: no TFX, no files.
"""

import dataclasses
from typing import Dict, List, Optional, Sequence

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from contract.features import CLASS_NAME_KEY, IMAGE_HEIGHT_KEY, IMAGE_WIDTH_KEY

SIZE_FEATURES = (IMAGE_HEIGHT_KEY, IMAGE_WIDTH_KEY)
L_INFINITY = 'L-infinity distance'
JENSEN_SHANNON = 'Jensen-Shannon divergence'

Statistics = statistics_pb2.DatasetFeatureStatisticsList


@dataclasses.dataclass
class Drift:
  """One feature's distance between the previous span and this one."""
  feature: str
  measure: str      # L_INFINITY or JENSEN_SHANNON
  value: float
  threshold: float
  setting: str      # the config key of the threshold
  previous: str     # the previous span in words: class shares or mean size
  current: str

  @property
  def exceeded(self) -> bool:
    return self.value > self.threshold

  def line(self, split: str) -> str:
    return (f'{self.feature} ({split}): {self.measure} {self.value:.2f} from the previous span, '
            f'expected at most {self.threshold:g} ({self.setting}): was {self.previous}, '
            f'came {self.current}')


def _feature(statistics: Statistics, name: str) -> Optional[statistics_pb2.FeatureNameStatistics]:
  for feature in statistics.datasets[0].features:
    if feature.name == name or list(feature.path.step) == [name]:
      return feature
  return None


def class_shares(statistics: Statistics) -> Dict[str, float]:
  """Class name -> share of the examples, from the class name's value counts."""
  feature = _feature(statistics, CLASS_NAME_KEY)
  if feature is None:
    return {}
  buckets = ([(b.label, b.sample_count) for b in feature.string_stats.rank_histogram.buckets]
             or [(v.value, v.frequency) for v in feature.string_stats.top_values])
  total = sum(count for _, count in buckets) or 1.0
  return {label: count / total for label, count in sorted(buckets)}


def _shares_text(shares: Dict[str, float]) -> str:
  return ', '.join(f'{name} {share:.0%}' for name, share in shares.items()) or 'no classes'


def _mean_text(statistics: Statistics, name: str) -> str:
  feature = _feature(statistics, name)
  return f'mean {feature.num_stats.mean:.0f} px' if feature is not None else 'no values'


def _drift_schema(previous: Statistics, max_class_drift: float,
                  max_size_drift: float) -> schema_pb2.Schema:
  """A schema inferred from the previous span, carrying only the comparators."""
  schema = tfdv.infer_schema(previous)
  for feature in schema.feature:
    if feature.name == CLASS_NAME_KEY:
      feature.drift_comparator.infinity_norm.threshold = max_class_drift
    elif feature.name in SIZE_FEATURES:
      feature.drift_comparator.jensen_shannon_divergence.threshold = max_size_drift
  return schema


def compare(current: Statistics, previous: Statistics, max_class_drift: float,
            max_size_drift: float) -> List[Drift]:
  """TFDV's drift measurements for the class name and the image size features that both
  spans have (a previous span written before the size features existed has none)."""
  anomalies = tfdv.validate_statistics(
      current, _drift_schema(previous, max_class_drift, max_size_drift),
      previous_statistics=previous)
  shares = {'previous': _shares_text(class_shares(previous)),
            'current': _shares_text(class_shares(current))}
  drifts = []
  for info in anomalies.drift_skew_info:
    name = '.'.join(info.path.step)
    for measurement in info.drift_measurements:
      if name == CLASS_NAME_KEY:
        drifts.append(Drift(name, L_INFINITY, measurement.value, measurement.threshold,
                            'data.max_class_drift', shares['previous'], shares['current']))
      else:
        drifts.append(Drift(name, JENSEN_SHANNON, measurement.value, measurement.threshold,
                            'data.max_size_drift', _mean_text(previous, name),
                            _mean_text(current, name)))
  return sorted(drifts, key=lambda d: d.feature)


def class_set_change(current: Statistics, previous: Statistics, split: str) -> Optional[str]:
  """A line naming the classes that appeared or disappeared, or None if the set is the same."""
  before, now = set(class_shares(previous)), set(class_shares(current))
  if before == now:
    return None
  changes = [f'{label} {", ".join(sorted(names))}' for label, names in
             (('new:', now - before), ('missing:', before - now)) if names]
  return (f'{CLASS_NAME_KEY} ({split}): the class set changed, expected '
          f'{", ".join(sorted(before))}, came {", ".join(sorted(now))} ({"; ".join(changes)})')


def _expected_values(schema: Optional[schema_pb2.Schema], name: str) -> str:
  """The values a string feature's schema domain allows, in words ('' if it has none)."""
  if schema is None:
    return ''
  for feature in schema.feature:
    if feature.name != name:
      continue
    if feature.HasField('string_domain'):
      values = feature.string_domain.value
    elif feature.HasField('domain'):
      values = next((d.value for d in schema.string_domain if d.name == feature.domain), [])
    else:
      return ''
    return f' (the schema allows {", ".join(values)})'
  return ''


def schema_lines(anomalies: anomalies_pb2.Anomalies, split: str,
                 schema: Optional[schema_pb2.Schema] = None) -> List[str]:
  """One line per reason of each anomalous feature (and of the data set as a whole)."""
  lines = []
  for name, info in sorted(anomalies.anomaly_info.items()):
    for reason in info.reason:
      lines.append(f'{name} ({split}): {reason.short_description}: '
                   f'{reason.description.strip()}{_expected_values(schema, name)}')
  for reason in anomalies.dataset_anomaly_info.reason:
    lines.append(f'(data set) ({split}): {reason.short_description}: '
                 f'{reason.description.strip()}')
  return lines


def drift_lines(drifts: Sequence[Drift], split: str) -> List[str]:
  return [d.line(split) for d in drifts if d.exceeded]
