"""Local Beam runs never try Prism (a runner binary Beam would download at run time)."""

import logging

import apache_beam as beam
import pytest
from apache_beam.runners.portability import prism_runner
from apache_beam.testing.util import assert_that, equal_to
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor

from pipeline import beam as presets
from pipeline import definition as pipeline_lib
from pipeline.configs import PipelineConfig, load_config


class _BeamStage(BaseBeamExecutor):
  """The Beam set-up of StatisticsGen, Transform and the Evaluator, with a tiny job."""

  def Do(self, input_dict, output_dict, exec_properties):  # pylint: disable=invalid-name
    with self._make_beam_pipeline() as pipeline:
      counts = (pipeline | beam.Create(['a', 'b', 'a']) | beam.combiners.Count.PerElement())
      assert_that(counts, equal_to([('a', 2), ('b', 1)]))


@pytest.fixture
def prism_attempts(monkeypatch):
  """Every PrismRunner start, recorded and made to fail loudly (DirectRunner would
  otherwise catch the failure and fall back quietly)."""
  attempts = []

  def refuse(self, pipeline, options):
    attempts.append(options.get_all_options().get('runner'))
    raise RuntimeError('test: PrismRunner must not run')

  monkeypatch.setattr(prism_runner.PrismRunner, 'run_pipeline', refuse)
  return attempts


@pytest.mark.parametrize('args', [
    PipelineConfig().beam_pipeline_args,
    presets.beam_pipeline_args('multi_processing', num_workers=2),
    presets.with_local_runner(['--direct_running_mode=in_memory']),  # a config without --runner
], ids=['default', 'multi_processing', 'config_without_runner'])
def test_local_beam_stage_never_tries_prism(args, prism_attempts, caplog):
  caplog.set_level(logging.INFO)
  _BeamStage(BaseBeamExecutor.Context(beam_pipeline_args=list(args))).Do({}, {}, {})
  assert prism_attempts == []
  assert 'prism' not in caplog.text.lower()


def test_with_local_runner_keeps_a_named_runner():
  dataflow = ['--runner=DataflowRunner', '--project=p']
  assert presets.with_local_runner(dataflow) == dataflow
  assert presets.with_local_runner([])[0] == presets.LOCAL_RUNNER


def test_pipeline_names_the_local_runner_when_the_config_does_not(class_folder, tmp_path):
  config = load_config(overrides={'data.path': str(class_folder), 'output': str(tmp_path),
                                  'beam_pipeline_args': ['--direct_num_workers=1']})
  args = pipeline_lib.create_pipeline(config).beam_pipeline_args
  assert args == [presets.LOCAL_RUNNER, '--direct_num_workers=1']
