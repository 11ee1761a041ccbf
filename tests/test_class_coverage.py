"""A model whose vocabulary holds a class with no eval example is not blessed (unless the
config allows it), and the Evaluator's line, the run summary and the report say why.

TFMA's own pass is stood in for by what it leaves when every threshold passed (a
validation result that says OK, a BLESSED blessing): the part under test is what the
project's executor does after it.
"""

import json
import os

import pytest
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from ml_metadata.proto import metadata_store_pb2
from tensorflow_model_analysis.proto import config_pb2, validation_result_pb2
from tfx.components.evaluator import executor as tfx_evaluator
from tfx.types import standard_artifacts

from components.evaluator import baseline_check, class_coverage
from components.example_gen.ingest_summary import IngestSummary, QUARANTINE_FILE, SUMMARY_FILE
from components.report import tfma_results
from pipeline import definition
from pipeline.configs import load_config
from tools import component_results


def _examples(tmp_path, eval_counts):
  """An Examples artifact with the ingest summary of china (36 images) and flower."""
  uri = tmp_path / 'examples'
  uri.mkdir()
  summary = IngestSummary(
      class_names=['china', 'flower'],
      written={'train': {'china': 29, 'flower': 1}, 'eval': eval_counts},
      skipped={'china': 0, 'flower': 0}, found={'china': 36, 'flower': 1}, skipped_files=[])
  (uri / SUMMARY_FILE).write_text(json.dumps(summary.to_json()))
  (uri / QUARANTINE_FILE).write_text('')
  examples = standard_artifacts.Examples()
  examples.uri = str(uri)
  return examples


def _write_validation_ok(evaluation_uri):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.TFRecordWriter(os.path.join(evaluation_uri, 'validations.tfrecord')) as writer:
    writer.write(validation_result_pb2.ValidationResult(validation_ok=True).SerializeToString())


def _evaluate(tmp_path, monkeypatch, eval_counts):
  def passed(self, input_dict, output_dict, exec_properties):
    del self, input_dict, exec_properties
    evaluation = output_dict['evaluation'][0].uri
    _write_validation_ok(evaluation)
    run = config_pb2.EvalRun(eval_config=config_pb2.EvalConfig(), version=tfma.version.VERSION)
    with open(os.path.join(evaluation, 'eval_config.json'), 'w') as f:
      f.write(json_format.MessageToJson(run))
    blessing = output_dict['blessing'][0]
    open(os.path.join(blessing.uri, 'BLESSED'), 'w').close()
    blessing.set_int_custom_property('blessed', 1)

  monkeypatch.setattr(tfx_evaluator.Executor, 'Do', passed)
  evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
  for artifact, name in ((evaluation, 'evaluation'), (blessing, 'blessing')):
    artifact.uri = str(tmp_path / name)
    os.makedirs(artifact.uri)
  class_coverage.Executor().Do({'examples': [_examples(tmp_path, eval_counts)]},
                               {'evaluation': [evaluation], 'blessing': [blessing]}, {})
  return evaluation, blessing


def _mlmd(artifact):
  """The MLMD proto of an artifact, as the console's component lines read it."""
  proto = metadata_store_pb2.Artifact()
  proto.CopyFrom(artifact.mlmd_artifact)
  return proto


def test_a_class_without_eval_example_withholds_the_blessing_and_says_why(tmp_path,
                                                                          monkeypatch):
  evaluation, blessing = _evaluate(tmp_path, monkeypatch, {'china': 7, 'flower': 0})
  assert sorted(os.listdir(blessing.uri)) == ['NOT_BLESSED']
  assert blessing.get_int_custom_property('blessed') == 0
  reason = ("class 'flower' has no eval example (1 train): its accuracy was never measured "
            '(evaluation.allow_classes_without_eval: true blesses such a model)')
  decision = tfma_results.load_decision(evaluation.uri, None, None)  # the run summary's call
  assert decision.blessed is False and decision.failures == [reason]
  line = component_results.describe({'blessing': [_mlmd(blessing)],
                                     'evaluation': [_mlmd(evaluation)]})
  assert line == f'not blessed: {reason}'


def test_every_class_evaluated_keeps_the_blessing(tmp_path, monkeypatch):
  evaluation, blessing = _evaluate(tmp_path, monkeypatch, {'china': 7, 'flower': 1})
  assert sorted(os.listdir(blessing.uri)) == ['BLESSED']
  assert blessing.get_int_custom_property('blessed') == 1
  decision = tfma_results.load_decision(evaluation.uri, None, None)
  assert decision.blessed is True and not decision.failures


@pytest.mark.parametrize('allow, evaluator_class', [
    (False, class_coverage.Evaluator), (True, baseline_check.Evaluator)])
def test_the_pipeline_opts_in_through_the_config(allow, evaluator_class):
  config = load_config(overrides={'data.path': '/data', 'output': '/runs/x',
                                  'evaluation.allow_classes_without_eval': allow}).validate()
  [evaluator] = [c for c in definition.create_pipeline(config).components if c.id == 'Evaluator']
  assert type(evaluator) is evaluator_class  # pylint: disable=unidiomatic-typecheck
