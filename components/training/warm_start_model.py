"""The Trainer's `base_model` for warm start: the latest blessed model that was not
trained on the newest training examples.

TFX's `LatestBlessedModelStrategy` would hand an unchanged rerun the model that the
previous run trained on the very same examples: a new Trainer input, so the Trainer
(and everything after it) runs again and pushes a model that learned nothing new. Here
that model is passed over; an unchanged rerun resolves what the run before it resolved
and stays cached, while new examples (a new span, changed files) warm-start from the
latest blessed model, as issue-free continuous training wants.

Which examples a model was trained on is read from ML Metadata: the inputs of the
execution that produced it.
"""

from typing import Dict, List, Optional, Set

from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.common import resolver

MODEL, BLESSING, EXAMPLES = 'model', 'model_blessing', 'examples'


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


class WarmStartModelStrategy(resolver.ResolverStrategy):
  """Resolves `model`/`model_blessing` to the newest blessed model whose Trainer did not
  read the newest artifact of `examples` (the Trainer's examples channel); none if
  there is no such model."""

  def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                        ) -> Optional[Dict[str, List[types.Artifact]]]:
    newest = sorted(input_dict[EXAMPLES], key=lambda a: a.id)[-1:]
    resolved = {MODEL: [], BLESSING: [], EXAMPLES: newest}
    blessed = _blessings_by_model(input_dict[BLESSING])
    for model in sorted(input_dict[MODEL], key=lambda a: a.id, reverse=True):
      if model.id in blessed and not (
          newest and newest[0].id in _producer_inputs(store, model.id)):
        resolved.update({MODEL: [model], BLESSING: [blessed[model.id]]})
        break
    return resolved
