"""Local Beam runs never try Prism (a runner binary Beam would download at run time)."""

import logging

import apache_beam as beam
import pytest
from apache_beam.runners.portability import prism_runner
from apache_beam.testing.util import assert_that, equal_to
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.utils import dependency_utils

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
def tfx_packagings(monkeypatch):
  """Every TFX self-packaging (`setup.py sdist` of the installed tfx), recorded, none run;
  the real `make_beam_dependency_flags` restored after the test."""
  built = []
  monkeypatch.setattr(dependency_utils, 'make_beam_dependency_flags',
                      dependency_utils.make_beam_dependency_flags)
  monkeypatch.setattr(dependency_utils, 'build_ephemeral_package',
                      lambda: built.append('sdist') or '/tmp/tfx_ephemeral.tar.gz')
  return built


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
def test_local_beam_stage_never_tries_prism(args, prism_attempts, tfx_packagings, caplog):
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


@pytest.mark.parametrize('args', [
    PipelineConfig().beam_pipeline_args,
    presets.beam_pipeline_args('multi_processing', num_workers=2),
    ['--runner', 'DirectRunner'],
    ['--runner=direct'],  # Beam's short, lower-case name
    ['--direct_num_workers=1'],  # Beam's default runner
], ids=['default', 'multi_processing', 'two_token_runner', 'short_name', 'no_runner'])
def test_local_beam_stage_does_not_package_tfx(args, tfx_packagings):
  presets.skip_tfx_packaging_on_local_runners()
  _BeamStage(BaseBeamExecutor.Context(beam_pipeline_args=list(args))).Do({}, {}, {})
  assert tfx_packagings == []


def test_remote_runner_still_gets_tfx_packaged(tfx_packagings):
  presets.skip_tfx_packaging_on_local_runners()
  presets.skip_tfx_packaging_on_local_runners()  # twice: still one wrapper
  args = presets.beam_pipeline_args('flink', job_endpoint='localhost:8099',
                                    environment_type='LOOPBACK')
  flags = dependency_utils.make_beam_dependency_flags(args)
  assert tfx_packagings == ['sdist']
  assert flags == [*args, '--extra_package=/tmp/tfx_ephemeral.tar.gz']
