"""TFX's Evaluator, plus one rule: a model is not blessed while a class of its vocabulary
has no eval example.

TFMA checks the slices it sees, and a class absent from the eval split has no slice: its
accuracy was never measured, yet every threshold passes. This executor runs TFX's
Evaluator (with `baseline_check`'s baseline rule), then reads the ingest summary ExampleGen wrote beside the examples; for each
class with no eval example it records a failure (`UNEVALUATED_FILE` in the evaluation
output, which the report and the run summary read) and withholds the blessing. The
pipeline uses `baseline_check.Evaluator` alone when `evaluation.allow_classes_without_eval`
is true.
"""

import json
import logging
import os
from typing import Any, Dict, List

import tensorflow as tf
from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils
from tfx import v1 as tfx

from components.evaluator import baseline_check
from components.example_gen.ingest_summary import SUMMARY_FILE, load_summary

UNEVALUATED_FILE = 'unevaluated_classes.json'
OPT_IN = 'evaluation.allow_classes_without_eval: true'


def unevaluated_classes(*examples_uris: str) -> Dict[str, int]:
  """Class -> train examples, for every class with no eval example in any of the Examples
  (a training window holds several spans; none when they carry no ingest summary, e.g.
  from another ExampleGen)."""
  train: Dict[str, int] = {}
  evaluated = set()
  for uri in examples_uris:
    if not tf.io.gfile.exists(os.path.join(uri, SUMMARY_FILE)):
      continue
    written = load_summary(uri).written
    for name, count in written['train'].items():
      train[name] = train.get(name, 0) + count
    evaluated.update(name for name, count in written['eval'].items() if count)
  return {name: count for name, count in train.items() if name not in evaluated}


def failure_texts(classes: Dict[str, int]) -> List[str]:
  return [f"class '{name}' has no eval example ({train} train): its accuracy was never "
          f'measured ({OPT_IN} blesses such a model)' for name, train in classes.items()]


def load_failures(evaluation_uri: str) -> List[str]:
  """The failures this executor recorded in an evaluation output (none: [])."""
  path = os.path.join(evaluation_uri, UNEVALUATED_FILE)
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)['failures']


def _withhold_blessing(blessing: types.Artifact) -> None:
  blessed = os.path.join(blessing.uri, constants.BLESSED_FILE_NAME)
  if tf.io.gfile.exists(blessed):
    tf.io.gfile.remove(blessed)
  io_utils.write_string_file(os.path.join(blessing.uri, constants.NOT_BLESSED_FILE_NAME), '')
  blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY,
                                   constants.NOT_BLESSED_VALUE)


class Executor(baseline_check.Executor):
  """The baseline-checked Evaluator executor; then no blessing while a class has no eval
  example."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    super().Do(input_dict, output_dict, exec_properties)
    examples = input_dict[standard_component_specs.EXAMPLES_KEY]
    failures = failure_texts(unevaluated_classes(*(e.uri for e in examples)))
    if not failures:
      return
    evaluation = artifact_utils.get_single_uri(
        output_dict[standard_component_specs.EVALUATION_KEY])
    with tf.io.gfile.GFile(os.path.join(evaluation, UNEVALUATED_FILE), 'w') as f:
      json.dump({'failures': failures}, f, indent=2)
    for blessing in output_dict.get(standard_component_specs.BLESSING_KEY, []):
      _withhold_blessing(blessing)
    logging.warning('Not blessed: %s', '; '.join(failures))


class Evaluator(tfx.components.Evaluator):
  """`baseline_check.Evaluator` that also refuses to bless a model with a class that has
  no eval example (same inputs, outputs and id)."""
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
