"""Resolvers that pass over what this run already has, so an unchanged rerun is cached.

TFX's `LatestArtifactStrategy` and `LatestBlessedModelStrategy` hand an unchanged rerun
(every component before them cached) what its previous run produced from the very same
inputs: the statistics it accepted (drift measured against themselves), the model it
trained as the Trainer's `base_model` (a model that learns nothing new) and as the
Evaluator's baseline (the candidate compared with itself). Each is a new input, so
everything after it runs again. The strategies here pass those over: an unchanged rerun
resolves what the run before it resolved, and new data or a new candidate still get the
latest accepted statistics or blessed model.

The `newest` channel names this run's artifact (its newest one); `exclude` says what is
passed over:
- 'derived': artifacts whose producing execution read it (read from ML Metadata's
  lineage): statistics accepted from it, models trained on it;
- 'itself': that artifact (the Trainer's newest model: the candidate).
"""

from typing import Dict, List, Optional, Set

from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.common import resolver

NEWEST, MODEL, BLESSING = 'newest', 'model', 'model_blessing'
EXCLUSIONS = ('derived', 'itself')


def _producer_inputs(store, artifact_id: int) -> Set[int]:
  """Ids of the input artifacts of the execution that produced `artifact_id`."""
  executions = [e.execution_id for e in store.get_events_by_artifact_ids([artifact_id])
                if e.type == metadata_store_pb2.Event.OUTPUT]
  return {e.artifact_id for e in store.get_events_by_execution_ids(executions)
          if e.type == metadata_store_pb2.Event.INPUT}


def _blessings_by_model(blessings: List[types.Artifact]) -> Dict[int, types.Artifact]:
  return {b.get_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY): b
          for b in blessings
          if b.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY) == 1}


class _OtherThanThisRun(resolver.ResolverStrategy):

  def __init__(self, exclude: str):
    if exclude not in EXCLUSIONS:
      raise ValueError(f'exclude must be one of {EXCLUSIONS}, got {exclude!r}')
    self._exclude = exclude

  def _candidates(self, store, artifacts: List[types.Artifact],
                  newest: List[types.Artifact]) -> List[types.Artifact]:
    """`artifacts` newest first, without those that `newest` excludes."""
    ordered = sorted(artifacts, key=lambda a: a.id, reverse=True)
    if not newest:
      return ordered
    if self._exclude == 'itself':
      return [a for a in ordered if a.id != newest[0].id]
    return [a for a in ordered if newest[0].id not in _producer_inputs(store, a.id)]

  @staticmethod
  def _newest(input_dict: Dict[str, List[types.Artifact]]) -> List[types.Artifact]:
    return sorted(input_dict[NEWEST], key=lambda a: a.id)[-1:]


class LatestOtherArtifactStrategy(_OtherThanThisRun):
  """Each channel besides `newest`: its newest artifact not excluded; none if none is left."""

  def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                        ) -> Optional[Dict[str, List[types.Artifact]]]:
    newest = self._newest(input_dict)
    resolved = {key: self._candidates(store, artifacts, newest)[:1]
                for key, artifacts in input_dict.items() if key != NEWEST}
    return {**resolved, NEWEST: newest}


class LatestOtherBlessedModelStrategy(_OtherThanThisRun):
  """`model`/`model_blessing`: the newest blessed model not excluded; none if none is left."""

  def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                        ) -> Optional[Dict[str, List[types.Artifact]]]:
    newest = self._newest(input_dict)
    blessed = _blessings_by_model(input_dict[BLESSING])
    models = [m for m in input_dict[MODEL] if m.id in blessed]
    model = self._candidates(store, models, newest)[:1]
    return {MODEL: model, BLESSING: [blessed[m.id] for m in model], NEWEST: newest}
