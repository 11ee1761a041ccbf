"""TFX's Evaluator, comparing with the last blessed model only when that comparison means
something.

`LatestBlessedModelStrategy` (the one baseline resolver that the Kubeflow V2 compiler
accepts) returns the newest blessed model whatever it is, and two of its answers would
make the comparison wrong:

- a model of other classes: label ids follow the sorted class folders, so a new class
  shifts them; accuracy deltas are then meaningless, and a label past the old model's
  outputs fails TFMA (`metric_util.one_hot`);
- the candidate itself: on an unchanged rerun the Trainer is cached, and the model it
  returns is the one blessed last time.

This executor drops such a baseline before TFX's own executor runs, which then judges the
model on the absolute thresholds alone (TFX ignores change thresholds without a baseline,
as on a first run). The reason goes to the log, and to the `baseline_not_used` custom
property of the blessing and the evaluation, which the console and the report show. The
class vocabulary of a model is its `assets.extra/class_names.txt` (written by the Trainer
beside every export).
"""

from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx import v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs
from tfx.utils import path_utils

from trainer.export import read_class_names

BASELINE_NOT_USED = 'baseline_not_used'  # custom property of the blessing and evaluation
_BASELINE = standard_component_specs.BASELINE_MODEL_KEY
_MODEL = standard_component_specs.MODEL_KEY


def model_classes(model: types.Artifact) -> List[str]:
  """The class names a Model artifact was trained on ([] if it records none)."""
  return read_class_names(path_utils.serving_model_path(
      model.uri, path_utils.is_old_model_artifact(model)))


def baseline_refusal(candidate: types.Artifact, baseline: types.Artifact) -> Optional[str]:
  """Why `baseline` must not be compared with `candidate`; None when it may."""
  # Ids may be unset (0) where an orchestrator passes artifacts without them (Kubeflow V2).
  if baseline.uri == candidate.uri or (baseline.id and baseline.id == candidate.id):
    return ('it is the candidate itself (the Trainer reused its model from the cache), '
            'so only the absolute thresholds apply')
  old, new = model_classes(baseline), model_classes(candidate)
  if not old:
    return f'the last blessed model ({baseline.uri}) records no class names'
  if old != new:
    return f'classes changed from {old} to {new}'
  return None


class Executor(evaluator_executor.Executor):
  """TFX's Evaluator executor without a baseline that `baseline_refusal` refuses."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    reason = None
    if input_dict.get(_BASELINE) and input_dict.get(_MODEL):
      reason = baseline_refusal(input_dict[_MODEL][0], input_dict[_BASELINE][0])
    if reason:
      logging.warning('Baseline not used: %s.', reason)
      input_dict = {key: value for key, value in input_dict.items() if key != _BASELINE}
    super().Do(input_dict, output_dict, exec_properties)
    if reason:
      for key in (standard_component_specs.BLESSING_KEY, standard_component_specs.EVALUATION_KEY):
        for artifact in output_dict.get(key, []):
          artifact.set_string_custom_property(BASELINE_NOT_USED, reason)


class Evaluator(tfx.components.Evaluator):
  """tfx.components.Evaluator whose baseline is used only if it is another model of the
  same classes (same inputs, outputs and parameters)."""
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
