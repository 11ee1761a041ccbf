"""Kubeflow / Vertex deployment files: compiled pipeline spec, Dockerfile, serving manifest, Beam presets.

Offline: the pipeline is compiled, never run; no Docker, Kubernetes or TF Serving is used.
"""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')

# pylint: disable=g-import-not-at-top,wrong-import-position
import json
import re
import subprocess
import sys
import tempfile

import pytest
import yaml

from components.evaluator import baseline_check, class_coverage
from pipeline import beam, fingerprints
from kubeflow import preflight as kfp_preflight
from kubeflow import runner
from tools import cli
from pipeline.configs import load_config

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUBEFLOW_DIR = os.path.join(PROJECT_ROOT, 'kubeflow')
IMAGE = 'europe-docker.pkg.dev/test-project/ml/transfer-pipeline:0.1.0-test'
BUCKET = 'gs://test-bucket/transfer'
COMPONENTS = ('ImageFolderExampleGen', 'StatisticsGen', 'SchemaGen', 'ExampleValidator',
              'DataValidation', 'previous_statistics_resolver', 'Transform', 'Trainer',
              'latest_blessed_model_resolver', 'Evaluator', 'ServingCanary', 'EvaluationReport',
              'AtomicPusher', 'DataInsightGen')
RESOLVERS = ('latest_blessed_model_resolver', 'previous_statistics_resolver')


def _cloud_config(**overrides):
  values = {'data.path': f'{BUCKET}/images', 'output': f'{BUCKET}/runs/kfp'}
  values.update(overrides)
  return load_config(overrides=values)


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
  """(path, parsed JSON, raw text) of the pipeline compiled with gs:// data and output."""
  out = tmp_path_factory.mktemp('kfp') / 'pipeline.json'
  returned = runner.compile_pipeline(_cloud_config(), str(out), IMAGE)
  assert returned == str(out)
  text = out.read_text()
  return out, json.loads(text), text


def _tasks(spec):
  return spec['pipelineSpec']['root']['dag']['tasks']


def _task_of(tasks, component_id):
  """Task names of a component: its id, or `<id>-...` (a resolver becomes one task per channel)."""
  names = [t for t in tasks if t == component_id or t.startswith(component_id + '-')]
  assert names, f'no task for {component_id}; tasks: {sorted(tasks)}'
  return names


def _ancestors(tasks, name):
  seen, todo = set(), list(tasks[name].get('dependentTasks', []))
  while todo:
    t = todo.pop()
    if t not in seen:
      seen.add(t)
      todo.extend(tasks[t].get('dependentTasks', []))
  return seen


def _constant_params(task):
  return {k: v.get('runtimeValue', {}).get('constantValue', {}).get('stringValue')
          for k, v in task.get('inputs', {}).get('parameters', {}).items()}


# Compiled pipeline ---------------------------------------------------------------------

def test_compiled_file_is_a_pipeline_job_v2(compiled):
  _, spec, _ = compiled
  pipeline_spec = spec['pipelineSpec']
  assert pipeline_spec['schemaVersion'].startswith('2.')
  assert pipeline_spec['pipelineInfo']['name'] == 'image-transfer'
  assert pipeline_spec['sdkVersion'].startswith('tfx-1.16')
  assert {'components', 'deploymentSpec', 'root'} <= set(pipeline_spec)
  assert spec['runtimeConfig']['gcsOutputDirectory'] == f'{BUCKET}/runs/kfp/pipeline_root'
  # It is a valid PipelineJob message, not just any JSON.
  from google.protobuf import json_format
  from kfp.pipeline_spec import pipeline_spec_pb2
  job = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineJob())
  assert job.runtime_config.gcs_output_directory.startswith('gs://')


def test_one_task_per_component(compiled):
  _, spec, _ = compiled
  tasks = _tasks(spec)
  for component in COMPONENTS:
    _task_of(tasks, component)
  # Nothing else: every task belongs to one of the components.
  owners = {t: [c for c in COMPONENTS if t == c or t.startswith(c + '-')] for t in tasks}
  assert all(len(o) == 1 for o in owners.values()), owners
  for component in COMPONENTS:
    if component != 'latest_blessed_model_resolver':
      assert _task_of(tasks, component) == [component]


def test_dependency_order(compiled):
  _, spec, _ = compiled
  tasks = _tasks(spec)
  assert 'ImageFolderExampleGen' in _ancestors(tasks, 'Transform')
  assert 'SchemaGen' in _ancestors(tasks, 'Transform')
  assert {'Transform', 'ImageFolderExampleGen'} <= _ancestors(tasks, 'Trainer')
  evaluator = _ancestors(tasks, 'Evaluator')
  assert 'Trainer' in evaluator
  assert any(t.startswith('latest_blessed_model_resolver') for t in evaluator)
  assert {'Evaluator', 'Trainer'} <= _ancestors(tasks, 'ServingCanary')
  assert {'ServingCanary', 'Evaluator', 'Trainer'} <= _ancestors(tasks, 'AtomicPusher')
  # The report runs last, after the push (whose PushedModel exists blessed or not).
  report = _ancestors(tasks, 'EvaluationReport')
  assert {'AtomicPusher', 'Evaluator', 'Trainer', 'ImageFolderExampleGen'} <= report
  # Data validation: the last accepted span's statistics are resolved before this run's
  # exist; the gate stands between the data and Transform/Trainer.
  assert 'previous_statistics_resolver' in _ancestors(tasks, 'StatisticsGen')
  assert {'StatisticsGen', 'SchemaGen', 'ExampleValidator',
          'previous_statistics_resolver'} <= _ancestors(tasks, 'DataValidation')
  assert 'DataValidation' in _ancestors(tasks, 'Transform')
  assert 'DataValidation' in _ancestors(tasks, 'Trainer')
  # Data insight reads ExampleGen's output and feeds the report; without a gate the
  # Trainer does not wait for it.
  assert _ancestors(tasks, 'DataInsightGen') == {'ImageFolderExampleGen'}
  assert 'DataInsightGen' in report
  assert 'DataInsightGen' not in _ancestors(tasks, 'Trainer')
  # No cycles and nothing runs before ExampleGen.
  assert not tasks['ImageFolderExampleGen'].get('dependentTasks')
  for name in tasks:
    assert name not in _ancestors(tasks, name)


def test_every_executor_uses_the_image(compiled):
  _, spec, _ = compiled
  executors = spec['pipelineSpec']['deploymentSpec']['executors']
  containers = {k: v['container'] for k, v in executors.items() if 'container' in v}
  # Container components; the resolvers run in the orchestrator, not a container.
  assert len(containers) == len(COMPONENTS) - len(RESOLVERS), sorted(executors)
  for name, container in containers.items():
    assert container['image'] == IMAGE, name
  assert all('resolver' in v for k, v in executors.items() if k not in containers)


def test_transform_and_trainer_carry_dotted_function_paths(compiled):
  _, spec, _ = compiled
  tasks = _tasks(spec)
  assert _constant_params(tasks['Transform'])['preprocessing_fn'] == \
      'trainer.preprocessing.preprocessing_fn'
  assert _constant_params(tasks['Trainer'])['run_fn'] == 'trainer.task.run_fn'
  # No module file (it would be a path of this machine); the image has the package.
  for name in ('Transform', 'Trainer'):
    assert not _constant_params(tasks[name]).get('module_file')
    assert not _constant_params(tasks[name]).get('module_path')


def test_cloud_paths_in_spec_and_no_class_names(compiled):
  """Classes are found when ExampleGen runs: nothing about them is compiled in."""
  _, spec, text = compiled
  tasks = _tasks(spec)
  assert _constant_params(tasks['ImageFolderExampleGen'])['input_base'] == f'{BUCKET}/images'
  push = json.loads(_constant_params(tasks['AtomicPusher'])['push_destination'])
  assert push['filesystem']['base_directory'] == \
      f'{BUCKET}/runs/kfp/serving_model/image_classifier'
  custom = json.loads(_constant_params(tasks['Trainer'])['custom_config'])
  assert set(custom) == {'model', 'training', 'serving', 'export', 'code_fingerprint',
                         'weights_fingerprint'}
  assert 'label_vocabulary' not in text and 'cats' not in text and 'dogs' not in text
  # TFX's own ExampleGen driver fingerprints the input when the task runs (cache key).
  example_gen = spec['pipelineSpec']['deploymentSpec']['executors'][
      'ImageFolderExampleGen_executor']['container']
  assert example_gen['lifecycle']['preCacheCheck']['command'][-1] == \
      'tfx.orchestration.kubeflow.v2.file_based_example_gen.driver'


def test_evaluator_checks_its_baseline_and_the_trainer_key_sees_code_and_weights(compiled):
  """The baseline check lives in the Evaluator's executor (the V2 compiler accepts only the
  stock resolver strategies), and the fingerprints are compiled into the Trainer's key."""
  _, spec, _ = compiled
  executors = spec['pipelineSpec']['deploymentSpec']['executors']
  # The class coverage rule's executor, which runs the baseline check's.
  assert 'components.evaluator.class_coverage.Executor' in json.dumps(
      executors['Evaluator_executor'])
  assert issubclass(class_coverage.Executor, baseline_check.Executor)
  custom = json.loads(_constant_params(_tasks(spec)['Trainer'])['custom_config'])
  assert custom['weights_fingerprint'] == 'imagenet'  # the default: named, not hashed
  assert custom['code_fingerprint'] == fingerprints.code_fingerprint('trainer.task')


def test_no_local_path_leaks(compiled):
  _, _, text = compiled
  home = os.path.expanduser('~')
  for local in {PROJECT_ROOT, os.getcwd(), home, tempfile.gettempdir(), '/work/main'}:
    if local and local != '/':
      assert local not in text, f'{local} leaked into the compiled pipeline'
  assert 'file://' not in text


def test_relative_local_output_would_leak(tmp_path, monkeypatch):
  """The leak check above can fail: a relative local output is compiled as a path of this machine."""
  monkeypatch.chdir(tmp_path)
  out = tmp_path / 'local.json'
  runner.compile_pipeline(_cloud_config(output='runs/local'), str(out), IMAGE)
  assert str(tmp_path) in out.read_text()


def test_compiling_never_reads_the_data_folder(tmp_path):
  """A local data folder that does not exist (yet) compiles: it is read when the run starts
  (local paths on both sides: a cluster that mounts volumes there)."""
  config = _cloud_config(**{'data.path': str(tmp_path / 'not-yet'),
                            'output': str(tmp_path / 'runs')})
  out = runner.compile_pipeline(config, str(tmp_path / 'p.json'), IMAGE)
  tasks = _tasks(json.loads(open(out).read()))
  assert _constant_params(tasks['ImageFolderExampleGen'])['input_base'] == str(tmp_path / 'not-yet')
  with pytest.raises(ValueError, match='image'):
    runner.compile_pipeline(_cloud_config(), str(tmp_path / 'q.json'), '')


def test_compile_kubeflow_keeps_the_run_options_in_the_spec(tmp_path, capsys):
  """The model and training flags of `run`, and a --config file, reach the Trainer's
  custom_config in the spec; the default image (no registry) is warned about."""
  config_file = tmp_path / 'kfp.yaml'
  config_file.write_text('training:\n  batch_size: 8\n  epochs: 2\n')
  out = tmp_path / 'p.json'
  assert cli.main(['compile-kubeflow', '--data', f'{BUCKET}/images', '--pipeline-output',
                   f'{BUCKET}/runs', '--config', str(config_file), '--weights', 'imagenet',
                   '--epochs', '5', '--image-size', '96', '--no-augment',
                   '--output', str(out)]) == 0
  custom = json.loads(_constant_params(_tasks(json.loads(out.read_text()))['Trainer'])[
      'custom_config'])
  assert custom['model']['weights'] == 'imagenet' and custom['model']['image_size'] == 96
  assert custom['training']['epochs'] == 5 and custom['training']['augment'] is False
  assert custom['training']['batch_size'] == 8
  transform = json.loads(_constant_params(_tasks(json.loads(out.read_text()))['Transform'])[
      'custom_config'])
  assert transform['image_size'] == 96
  captured = capsys.readouterr()
  assert captured.err.startswith(
      'warning: image transfer-pipeline:0.1.0 names no registry'), captured.err
  assert 'weights imagenet, 5 epochs, image size 96, augment off' in captured.out


def _executor(spec, task_name):
  label = spec['pipelineSpec']['components'][_tasks(spec)[task_name]['componentRef']['name']][
      'executorLabel']
  return spec['pipelineSpec']['deploymentSpec']['executors'][label]['container']


def test_trainer_gpu_flag_puts_only_the_trainer_on_the_accelerator(tmp_path):
  config_file = tmp_path / 'kfp.yaml'
  config_file.write_text('kubeflow: {trainer_cpu: 8, trainer_memory_gb: 30}\n')
  out = tmp_path / 'p.json'
  assert cli.main(['compile-kubeflow', '--data', f'{BUCKET}/images', '--pipeline-output',
                   f'{BUCKET}/runs', '--config', str(config_file), '--image', IMAGE,
                   '--trainer-gpu', 'NVIDIA_TESLA_T4:2', '--output', str(out)]) == 0
  spec = json.loads(out.read_text())
  resources = _executor(spec, 'Trainer')['resources']
  assert resources['accelerator'] == {'type': 'NVIDIA_TESLA_T4', 'count': '2'}
  assert (resources['cpuLimit'], resources['memoryLimit']) == (8, 30)
  others = [name for name in _tasks(spec) if name != 'Trainer' and 'resolver' not in name]
  assert others and all('resources' not in _executor(spec, name) for name in others)


@pytest.mark.parametrize('flag', [':2', 'NVIDIA_TESLA_T4:two'])
def test_a_bad_trainer_gpu_flag_is_refused_in_one_line(tmp_path, capsys, flag):
  assert cli.main(['compile-kubeflow', '--data', f'{BUCKET}/images', '--pipeline-output',
                   f'{BUCKET}/runs', '--trainer-gpu', flag,
                   '--output', str(tmp_path / 'p.json')]) != 0
  assert capsys.readouterr().err.strip().splitlines() == [
      f"error: --trainer-gpu takes TYPE or TYPE:COUNT (e.g. NVIDIA_TESLA_T4:1), got '{flag}'."]
  assert not (tmp_path / 'p.json').exists()


def test_a_local_data_folder_for_a_remote_pipeline_root_is_refused(tmp_path):
  config = _cloud_config(**{'data.path': str(tmp_path / 'images')})
  with pytest.raises(ValueError, match=f'data.path: {tmp_path}/images is a path of this '
                     f'machine, but the pipeline root {BUCKET}/runs/kfp is remote'):
    runner.compile_pipeline(config, str(tmp_path / 'p.json'), IMAGE)
  config = _cloud_config(**{'inference.data': '/mnt/unlabeled'})
  with pytest.raises(ValueError, match='inference.data: /mnt/unlabeled is a path of this'):
    runner.compile_pipeline(config, str(tmp_path / 'p.json'), IMAGE)
  assert not (tmp_path / 'p.json').exists()


@pytest.mark.parametrize('image, has_registry', [
    ('transfer-pipeline:0.1.0', False), ('me/transfer-pipeline:1', False),
    (IMAGE, True), ('gcr.io/p/x:1', True), ('localhost:5000/x:1', True), ('localhost/x', True),
])
def test_an_image_without_registry_is_warned_about(image, has_registry):
  assert kfp_preflight.image_has_registry(image) is has_registry
  warned = any('names no registry' in w for w in kfp_preflight.warnings(_cloud_config(), image))
  assert warned is not has_registry


def test_tfx_cli_compiles_runner_file(tmp_path):
  """`tfx pipeline compile --engine vertex --pipeline_path kubeflow/runner.py` with env settings."""
  config_file = tmp_path / 'kfp.yaml'
  config_file.write_text(yaml.safe_dump({
      'output': 's3://test-bucket/runs/cli',
      'data': {'path': 's3://test-bucket/images'}}))
  bin_dir = os.path.dirname(sys.executable)
  tfx_cli = os.path.join(bin_dir, 'tfx')
  if not os.path.exists(tfx_cli):
    pytest.skip('tfx CLI not installed next to this Python')
  env = dict(os.environ, TRANSFER_PIPELINE_CONFIG=str(config_file),
             TRANSFER_PIPELINE_IMAGE=IMAGE, TRANSFER_PIPELINE_OUTPUT_DIR=str(tmp_path / 'out'),
             TF_USE_LEGACY_KERAS='1', TF_CPP_MIN_LOG_LEVEL='2',
             # The CLI looks for `kfp` in `pip freeze` of the pip on PATH.
             PATH=bin_dir + os.pathsep + os.environ.get('PATH', ''))
  result = subprocess.run(
      [tfx_cli, 'pipeline', 'compile', '--engine', 'vertex', '--pipeline_path',
       os.path.join(KUBEFLOW_DIR, 'runner.py')],
      cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert 'compiled successfully' in result.stdout
  spec = json.loads((tmp_path / 'out' / 'pipeline.json').read_text())
  assert spec['runtimeConfig']['gcsOutputDirectory'] == 's3://test-bucket/runs/cli/pipeline_root'
  images = {e['container']['image'] for e in
            spec['pipelineSpec']['deploymentSpec']['executors'].values() if 'container' in e}
  assert images == {IMAGE}


# Dockerfile ------------------------------------------------------------------------------

def _dockerfile_instructions():
  """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
  with open(os.path.join(KUBEFLOW_DIR, 'Dockerfile')) as f:
    lines = [l.rstrip('\n') for l in f if not l.lstrip().startswith('#')]
  joined, current = [], ''
  for line in lines:
    if line.rstrip().endswith('\\'):
      current += line.rstrip()[:-1] + ' '
      continue
    current += line
    if current.strip():
      joined.append(current.strip())
    current = ''
  pairs = []
  for entry in joined:
    instruction, _, args = entry.partition(' ')
    pairs.append((instruction.upper(), args.strip()))
  return pairs


def _lock_python_version():
  with open(os.path.join(PROJECT_ROOT, 'requirements.lock')) as f:
    header = f.readline()
  match = re.search(r'Python (\d+\.\d+)', header)
  assert match, f'requirements.lock does not name its Python version: {header!r}'
  return match.group(1)


def test_dockerfile_base_python_matches_lock():
  instructions = _dockerfile_instructions()
  known = {'FROM', 'ENV', 'WORKDIR', 'COPY', 'RUN', 'CMD', 'ENTRYPOINT', 'ARG', 'LABEL', 'USER'}
  assert all(i in known for i, _ in instructions), instructions
  froms = [a for i, a in instructions if i == 'FROM']
  assert len(froms) == 1 and instructions[0][0] == 'FROM'
  match = re.fullmatch(r'python:(\d+\.\d+)(?:\.\d+)?-slim\S*', froms[0])
  assert match, froms[0]
  assert match.group(1) == _lock_python_version() == '3.10'
  with open(os.path.join(PROJECT_ROOT, 'pyproject.toml')) as f:
    assert f'requires-python = "=={match.group(1)}.*"' in f.read()


def test_dockerfile_gpu_build_adds_cuda_to_the_locked_tensorflow():
  """`--build-arg GPU=1` installs tensorflow[and-cuda] at exactly the lock's version; the
  shell that picks the version out of the lock is run here on the real lock."""
  instructions = _dockerfile_instructions()
  assert ('ARG', 'GPU=0') in instructions
  gpu_run = [a for i, a in instructions if i == 'RUN' and 'and-cuda' in a]
  assert len(gpu_run) == 1 and '"$GPU" = "1"' in gpu_run[0]
  version_command = re.search(r'\$\((sed [^)]*)\)', gpu_run[0]).group(1)
  lock = os.path.join(PROJECT_ROOT, 'requirements.lock')
  version = subprocess.run(['sh', '-c', version_command.replace('/app/requirements.lock', lock)],
                           capture_output=True, text=True, check=True).stdout.strip()
  with open(lock) as f:
    assert f'tensorflow=={version}\n' in f.read().splitlines(keepends=True)
  assert version == '2.16.2'


def test_dockerfile_sets_legacy_keras_and_installs_lock():
  instructions = _dockerfile_instructions()
  env = {}
  for instruction, args in instructions:
    if instruction == 'ENV':
      for key, value in re.findall(r'(\w+)=(\S+)', args):
        env[key] = value
  assert env.get('TF_USE_LEGACY_KERAS') == '1'
  copies = ' '.join(a for i, a in instructions if i == 'COPY')
  runs = [a for i, a in instructions if i == 'RUN']
  assert 'requirements.lock' in copies
  lock_install = [i for i, r in enumerate(runs)
                  if re.search(r'pip install (-\S+ )*-r \S*requirements\.lock', r)]
  project_install = [i for i, r in enumerate(runs) if re.search(r'pip install --no-deps \.', r)]
  assert lock_install and project_install and lock_install[0] <= project_install[0]
  # Every package the project installs (pyproject.toml) is copied into the image.
  with open(os.path.join(PROJECT_ROOT, 'pyproject.toml')) as f:
    packages = re.findall(r'"(\w+)\*"', re.search(r'^include = \[(.*)\]', f.read(), re.M).group(1))
  assert 'pipeline' in packages and 'console' in packages
  for package in packages:
    assert re.search(rf'\b{package}\b', copies), package
  # The ENV comes before anything that runs Python.
  env_index = next(i for i, (ins, a) in enumerate(instructions)
                   if ins == 'ENV' and 'TF_USE_LEGACY_KERAS' in a)
  first_run = next(i for i, (ins, _) in enumerate(instructions) if ins == 'RUN')
  assert env_index < first_run


# Serving manifest ------------------------------------------------------------------------

def _serving_docs():
  with open(os.path.join(KUBEFLOW_DIR, 'serving', 'deployment.yaml')) as f:
    return [d for d in yaml.safe_load_all(f) if d]


def test_serving_manifest_matches_pusher_layout():
  docs = _serving_docs()
  kinds = {d['kind']: d for d in docs}
  assert set(kinds) == {'Deployment', 'Service'}
  config = load_config(overrides={'data.path': 'unused', 'output': 'runs/x'})
  model_name = config.model_name
  # The Pusher writes <output>/serving_model/<model_name>/<version>/.
  assert config.serving_model_dir == os.path.join('runs/x', 'serving_model', model_name)

  deployment = kinds['Deployment']
  pod = deployment['spec']['template']['spec']
  assert deployment['spec']['selector']['matchLabels'].items() <= \
      deployment['spec']['template']['metadata']['labels'].items()
  (container,) = pod['containers']
  assert container['image'].split(':')[0] == 'tensorflow/serving'
  args = dict(a.lstrip('-').split('=', 1) for a in container['args'])
  # The model comes from models.config (its base path: components/serving/serving_config.py).
  assert 'model_base_path' not in args and 'model_name' not in args
  base_path = f'/models/{model_name}'
  ports = {p['containerPort'] for p in container['ports']}
  assert ports == {8500, 8501}
  assert args.get('rest_api_port', '8501') == '8501' and args.get('port', '8500') == '8500'
  probe = container['readinessProbe']['httpGet']
  assert probe['path'] == f'/v1/models/{model_name}' and probe['port'] == 8501

  # The model volume is mounted at the base path and holds <output>/serving_model/<model_name>.
  mounts = [m for m in container['volumeMounts'] if m['mountPath'] == base_path]
  assert len(mounts) == 1
  volume = next(v for v in pod['volumes'] if v['name'] == mounts[0]['name'])
  assert 'persistentVolumeClaim' in volume
  assert mounts[0].get('subPath', model_name) == os.path.basename(config.serving_model_dir)

  service = kinds['Service']
  assert service['spec']['selector'].items() <= \
      deployment['spec']['template']['metadata']['labels'].items()
  assert {p['port'] for p in service['spec']['ports']} == {8500, 8501}


# Beam presets ----------------------------------------------------------------------------

def test_beam_local_presets():
  assert '--direct_running_mode=in_memory' in beam.beam_pipeline_args('in_memory')
  args = beam.beam_pipeline_args('multi_processing', num_workers=3)
  assert '--direct_running_mode=multi_processing' in args
  assert '--direct_num_workers=3' in args
  for bad in (0, -1, 2.5, '4', True):
    with pytest.raises(ValueError, match='num_workers'):
      beam.beam_pipeline_args('multi_processing', num_workers=bad)
  with pytest.raises(ValueError, match='num_workers'):
    beam.beam_pipeline_args('multi_processing')


def test_beam_dataflow_preset():
  args = beam.beam_pipeline_args('dataflow', project='p1', region='europe-west4',
                                 temp_location='gs://b/tmp', max_num_workers=5)
  assert args[0] == '--runner=DataflowRunner'
  assert {'--project=p1', '--region=europe-west4', '--temp_location=gs://b/tmp',
          '--max_num_workers=5'} <= set(args)
  full = dict(project='p1', region='europe-west4', temp_location='gs://b/tmp')
  for missing in ('project', 'region', 'temp_location'):
    kwargs = {k: v for k, v in full.items() if k != missing}
    with pytest.raises(ValueError, match=missing):
      beam.beam_pipeline_args('dataflow', **kwargs)
    with pytest.raises(ValueError, match=missing):
      beam.beam_pipeline_args('dataflow', **dict(kwargs, **{missing: ' '}))
  with pytest.raises(ValueError, match='temp_location'):
    beam.beam_pipeline_args('dataflow', **dict(full, temp_location='/tmp/local'))
  with pytest.raises(ValueError, match='region'):
    beam.beam_pipeline_args('dataflow', **dict(full, region='Europe West'))


@pytest.mark.parametrize('preset', ['flink', 'spark'])
def test_beam_portable_presets(preset):
  args = beam.beam_pipeline_args(preset, job_endpoint='jobserver.kubeflow:8099',
                                 environment_type='EXTERNAL', environment_config='localhost:50000')
  assert args[:3] == ['--runner=PortableRunner', '--job_endpoint=jobserver.kubeflow:8099',
                      '--environment_type=EXTERNAL']
  assert '--environment_config=localhost:50000' in args
  assert beam.beam_pipeline_args(preset, job_endpoint='localhost:8099',
                                 environment_type='loopback')[-1] == '--environment_type=LOOPBACK'
  with pytest.raises(ValueError, match='job_endpoint'):
    beam.beam_pipeline_args(preset, environment_type='LOOPBACK')
  for bad in ('localhost', 'http://h:8099', 'h:99999', 'h:'):
    with pytest.raises(ValueError, match='job_endpoint'):
      beam.beam_pipeline_args(preset, job_endpoint=bad, environment_type='LOOPBACK')
  with pytest.raises(ValueError, match='environment_type'):
    beam.beam_pipeline_args(preset, job_endpoint='h:8099')
  with pytest.raises(ValueError, match='environment_type'):
    beam.beam_pipeline_args(preset, job_endpoint='h:8099', environment_type='KUBERNETES')
  with pytest.raises(ValueError, match='environment_config'):
    beam.beam_pipeline_args(preset, job_endpoint='h:8099', environment_type='DOCKER')


def test_beam_unknown_preset_and_option():
  with pytest.raises(ValueError, match='in_memory, multi_processing, dataflow, flink, spark'):
    beam.beam_pipeline_args('direct')
  with pytest.raises(ValueError, match='num_workers'):
    beam.beam_pipeline_args('in_memory', num_workers=2)


def test_beam_preset_compiles_into_every_beam_executor(tmp_path):
  config = _cloud_config()
  config.beam_pipeline_args = beam.beam_pipeline_args(
      'dataflow', project='p1', region='us-central1', temp_location=f'{BUCKET}/beam-tmp')
  out = runner.compile_pipeline(config, str(tmp_path / 'p.json'), IMAGE)
  executors = json.loads(open(out).read())['pipelineSpec']['deploymentSpec']['executors']
  for name in ('StatisticsGen_executor', 'Transform_executor', 'Evaluator_executor'):
    assert '--runner=DataflowRunner' in executors[name]['container']['args'], name
    assert f'--temp_location={BUCKET}/beam-tmp' in executors[name]['container']['args']


def test_data_gates_run_insight_before_the_trainer(tmp_path):
  config = _cloud_config(**{'data.max_eval_leaks': 0, 'data.max_label_issue_fraction': 0.05})
  out = runner.compile_pipeline(config.validate(), str(tmp_path / 'p.json'), IMAGE)
  spec = json.loads(open(out).read())
  tasks = _tasks(spec)
  assert 'DataInsightGen' in _ancestors(tasks, 'Trainer')
  parameters = tasks['DataInsightGen']['inputs']['parameters']
  value = {name: p['runtimeValue']['constantValue'] for name, p in parameters.items()}
  assert value['max_eval_leaks'] == {'intValue': '0'}
  assert value['max_label_issue_fraction'] == {'doubleValue': 0.05}
  assert json.loads(value['model']['stringValue'])['cut_layer'] == 'mixed7'


def test_opt_in_components_compile(tmp_path):
  """Tuner, TFLite export and batch inference (BulkInferrer on gs:// images) compile too."""
  config = _cloud_config(**{'training.augment': False, 'tuning.enabled': True,
                            'export.tflite': True, 'inference.data': f'{BUCKET}/unlabeled'})
  out = runner.compile_pipeline(config.validate(), str(tmp_path / 'p.json'), IMAGE)
  tasks = _tasks(json.loads(open(out).read()))
  for name in ('tuner', 'boundedbulkinferrer', 'inferencetable', 'unlabeledimageexamplegen'):
    assert any(t.lower() == name for t in tasks), sorted(tasks)


def test_span_pattern_and_training_window_compile(tmp_path):
  """Kubeflow V2 compiles no span resolver: TFX's own driver resolves the newest span
  of the `{SPAN}` pattern and the ExampleGen ingests the window itself."""
  config = _cloud_config(**{'data.path': f'{BUCKET}/photos/week-{{SPAN:3}}',
                            'data.train_spans': 3})
  out = runner.compile_pipeline(config.validate(), str(tmp_path / 'p.json'), IMAGE)
  tasks = _tasks(json.loads(open(out).read()))
  params = _constant_params(tasks['ImageFolderExampleGen'])
  assert params['input_base'] == f'{BUCKET}/photos'
  assert json.loads(params['input_config'])['splits'][0]['pattern'] == 'week-{SPAN:3}/*'
  options = json.loads(json.loads(params['custom_config'])['custom_config']['value'])
  assert (options['span_pattern'], options['ingest_spans']) == ('week-{SPAN:3}/*', 3)
  assert not any('span_window' in t or 'transform_cache' in t for t in tasks), sorted(tasks)
  # Warm start: the Trainer reads the latest blessed model (a resolver that compiles).
  assert any(t.startswith('latest_blessed_model_resolver') for t in _ancestors(tasks, 'Trainer'))
  assert 'base_model' in tasks['Trainer']['inputs']['artifacts']
  assert 'raw_examples' not in json.loads(_constant_params(tasks['Trainer'])['custom_config'])


def test_previous_statistics_resolver_queries_statistics_and_schema_can_be_imported(tmp_path):
  """Kubeflow's latest-artifact resolver queries by type only (the README says what that
  means); a `data.schema` on gs:// is imported when SchemaGen runs, never read here."""
  config = _cloud_config(**{'data.schema': f'{BUCKET}/schema/schema.pbtxt'})
  out = runner.compile_pipeline(config.validate(), str(tmp_path / 'p.json'), IMAGE)
  spec = json.loads(open(out).read())
  executors = spec['pipelineSpec']['deploymentSpec']['executors']
  [query] = executors['previous_statistics_resolver_executor']['resolver'][
      'outputArtifactQueries'].values()
  assert query['filter'] == 'schema_title="tfx.ExampleStatistics" AND state=LIVE'
  schema_task = _tasks(spec)['SchemaGen']
  assert _constant_params(schema_task)['schema_file'] == f'{BUCKET}/schema/schema.pbtxt'
  assert 'curated_schema._CuratedSchemaGenExecutor' in json.dumps(executors['SchemaGen_executor'])
  assert _constant_params(schema_task)['schema_fingerprint'] == ''  # not read when compiled
