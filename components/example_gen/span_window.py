"""The training window: the newest N spans' Examples, ingested by this and earlier runs.

TFX's `SpanRangeStrategy` (rolling range) with two additions that a window over
several runs needs:
- one artifact per span: the newest version, and of equal versions the newest artifact
  (a span ingested twice, e.g. after a changed file, is not read twice);
- a class set that changed ends the window: spans older than the newest span with other
  classes are left out, so a class that appears or disappears trains from scratch on the
  new classes instead of mixing two label numberings.

Spans are read from TFX's typed `span`/`version` properties (ImageFolderExampleGen sets
them), else from the custom ones TFX's own ExampleGen driver writes. With fewer than N
spans so far (the first runs), the window holds the spans there are.
"""

import logging
from typing import Dict, List, Optional

from tfx import types
from tfx.dsl.components.common import resolver

LABEL_VOCABULARY = 'label_vocabulary'  # ImageFolderExampleGen's custom property


def span_of(artifact: types.Artifact) -> int:
  if 'span' in artifact.mlmd_artifact.properties:
    return artifact.span
  return artifact.get_int_custom_property('span')


def version_of(artifact: types.Artifact) -> int:
  if 'version' in artifact.mlmd_artifact.properties:
    return artifact.version
  if artifact.has_custom_property('version'):
    return artifact.get_int_custom_property('version')
  return -1


def classes_of(artifact: types.Artifact) -> str:
  return artifact.get_string_custom_property(LABEL_VOCABULARY)


def newest_spans(artifacts: List[types.Artifact], num_spans: int) -> List[types.Artifact]:
  """One artifact per span, the spans of the rolling range of `num_spans` that ends at
  the newest span, cut where the class set changes; newest first."""
  if not artifacts:
    return []
  per_span: Dict[int, types.Artifact] = {}
  for artifact in artifacts:
    span = span_of(artifact)
    best = per_span.get(span)
    if best is None or (version_of(artifact), artifact.id) > (version_of(best), best.id):
      per_span[span] = artifact
  newest = max(per_span)
  window = [per_span[s] for s in sorted(per_span, reverse=True) if s > newest - num_spans]
  kept = [window[0]]
  for artifact in window[1:]:
    if classes_of(artifact) != classes_of(kept[0]):
      logging.warning('Training window: span %d is left out (classes %s; span %d has %s): '
                      'the class set changed.', span_of(artifact), classes_of(artifact),
                      newest, classes_of(kept[0]))
      break
    kept.append(artifact)
  logging.info('Training window: spans %s.', sorted(span_of(a) for a in kept))
  return kept


class SpanWindowStrategy(resolver.ResolverStrategy):
  """Resolves each input channel to the Examples of its newest `num_spans` spans."""

  def __init__(self, num_spans: int):
    self._num_spans = int(num_spans)

  def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                        ) -> Optional[Dict[str, List[types.Artifact]]]:
    del store
    resolved = {key: newest_spans(artifacts, self._num_spans)
                for key, artifacts in input_dict.items()}
    return resolved if all(resolved.values()) else None


class LatestOrNothingStrategy(resolver.ResolverStrategy):
  """The newest artifact of each channel, or none at all (on the first run): TFX's
  `LatestArtifactStrategy` without its input-resolution error when there is none yet."""

  def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                        ) -> Optional[Dict[str, List[types.Artifact]]]:
    del store
    return {key: sorted(artifacts, key=lambda a: a.id)[-1:]
            for key, artifacts in input_dict.items()}
