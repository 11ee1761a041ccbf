"""Resolvers that pass over what this run already has, so an unchanged rerun is cached.

TFX's `LatestArtifactStrategy` and `LatestBlessedModelStrategy` hand an unchanged rerun
(every component before them cached) what its previous run produced from the very same
inputs: the statistics it accepted (drift measured against themselves), the model it
trained as the Trainer's `base_model` (a model that learns nothing new) and as the
Evaluator's baseline (the candidate compared with itself). Each is a new input, so
everything after it runs again. The strategies here pass those over: an unchanged rerun
resolves what the run before it resolved, and new data or a new candidate still get the
latest accepted statistics or blessed model.

The `this_run` input is an output channel of this run (its artifacts, cached or new);
`exclude` says what is passed over:
- 'derived': artifacts whose producing execution read all of them (from ML Metadata's
  lineage): statistics accepted from this run's statistics, models trained on its
  examples;
- 'itself': this run's artifacts themselves (the Trainer's model: the candidate).
A span let through with anomalies (`data.validation: warn`) is the exception: the user
accepted it, so when its statistics come again they are compared with themselves.
"""

import itertools
from typing import Dict, Iterator, List, Optional, Set

from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.common import resolver

from components.validation.data_validation import NUM_ANOMALIES

THIS_RUN, MODEL, BLESSING, STATISTICS = 'this_run', 'model', 'model_blessing', 'statistics'
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

  def _is_ours(self, store, artifact: types.Artifact, ours: Set[int]) -> bool:
    """Whether `artifact` is one of this run's artifacts `ours` ('itself') or was
    produced from all of them ('derived')."""
    if not ours:
      return False
    if self._exclude == 'itself':
      return artifact.id in ours
    return ours <= _producer_inputs(store, artifact.id)

  def _others(self, store, artifacts: List[types.Artifact],
              this_run: List[types.Artifact]) -> Iterator[types.Artifact]:
    """`artifacts`, newest first, that this run's artifacts do not exclude."""
    ours = {a.id for a in this_run}
    return (a for a in sorted(artifacts, key=lambda a: a.id, reverse=True)
            if not self._is_ours(store, a, ours))


class PreviousAcceptedStatisticsStrategy(_OtherThanThisRun):
  """`statistics`: the newest accepted statistics not accepted from this run's own; but
  if this run's statistics were once let through with anomalies (`data.validation:
  warn`), that acceptance: a span the user accepted is its own baseline from then on."""

  def __init__(self):
    super().__init__('derived')

  def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                        ) -> Optional[Dict[str, List[types.Artifact]]]:
    this_run, accepted = input_dict[THIS_RUN], input_dict[STATISTICS]
    ours = {a.id for a in this_run}
    let_through = (a for a in sorted(accepted, key=lambda a: a.id, reverse=True)
                   if a.get_int_custom_property(NUM_ANOMALIES) > 0
                   and self._is_ours(store, a, ours))
    previous = itertools.chain(let_through, self._others(store, accepted, this_run))
    return {STATISTICS: list(itertools.islice(previous, 1)), THIS_RUN: this_run}


class LatestOtherBlessedModelStrategy(_OtherThanThisRun):
  """`model`/`model_blessing`: the newest blessed model not excluded; none if none is left."""

  def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                        ) -> Optional[Dict[str, List[types.Artifact]]]:
    this_run = input_dict[THIS_RUN]
    blessed = _blessings_by_model(input_dict[BLESSING])
    models = [m for m in input_dict[MODEL] if m.id in blessed]
    model = list(itertools.islice(self._others(store, models, this_run), 1))
    return {MODEL: model, BLESSING: [blessed[m.id] for m in model], THIS_RUN: this_run}
