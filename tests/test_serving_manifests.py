"""Every Kubernetes manifest of the project is valid against the Kubernetes schema
(kubernetes-validate's bundled OpenAPI schemas, offline), and the TF Serving Deployment
reads the configuration files the Pusher writes, which parse as TF Serving's protos."""

import glob
import os

import kubernetes_validate
import pytest
import yaml
from google.protobuf import text_format

from components.serving import serving_config
from pipeline.configs import load_config

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFESTS = sorted(glob.glob(os.path.join(PROJECT_ROOT, 'kubeflow', '**', '*.yaml'),
                             recursive=True))
# The Kubernetes version the manifests are checked against (strict: unknown fields fail).
KUBERNETES_VERSION = '1.30.0'


def _documents(path):
  with open(path) as f:
    return [d for d in yaml.safe_load_all(f) if d]


def _deployment():
  [deployment] = [d for d in _documents(os.path.join(PROJECT_ROOT, 'kubeflow', 'serving',
                                                     'deployment.yaml'))
                  if d['kind'] == 'Deployment']
  return deployment


@pytest.mark.parametrize('path', MANIFESTS, ids=lambda p: os.path.relpath(p, PROJECT_ROOT))
def test_manifest_is_valid_kubernetes(path):
  documents = _documents(path)
  assert documents
  for document in documents:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_check_catches_a_wrong_field():
  deployment = _deployment()
  container = deployment['spec']['template']['spec']['containers'][0]
  container['args'] = '--port=8500'  # a string where a list belongs
  with pytest.raises(kubernetes_validate.ValidationError):
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
  container.pop('args')
  container['argz'] = ['--port=8500']  # an unknown field
  with pytest.raises(kubernetes_validate.ValidationError):
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_deployment_reads_the_files_the_pusher_writes(tmp_path):
  config = load_config(overrides={'data.path': 'unused', 'output': str(tmp_path)})
  pod = _deployment()['spec']['template']['spec']
  [container] = pod['containers']
  args = dict(a.lstrip('-').split('=', 1) for a in container['args'])
  # Where each file is mounted in the container, and which file of the push it is.
  mounted = {}
  for mount in container['volumeMounts']:
    volume = next(v for v in pod['volumes'] if v['name'] == mount['name'])
    assert volume['persistentVolumeClaim']['claimName'] == 'transfer-pipeline-models'
    mounted[mount['mountPath']] = mount['subPath']  # below <output>/serving_model
  serving_model = os.path.dirname(config.serving_model_dir)
  folder = serving_config.write_serving_config(config.serving_model_dir, config.model_name,
                                               version=7, stable_version=5,
                                               max_batch=config.serving.max_batch)
  flags = {'model_config_file': serving_config.MODELS_CONFIG,
           'batching_parameters_file': serving_config.BATCHING_CONFIG,
           'monitoring_config_file': serving_config.MONITORING_CONFIG}
  for flag, name in flags.items():
    mount_path, file_name = os.path.split(args[flag])
    assert file_name == name
    assert os.path.join(serving_model, mounted[mount_path], file_name) == os.path.join(
        folder, name)
  assert args['enable_batching'] == 'true'
  assert args['allow_version_labels_for_unavailable_models'] == 'true'

  parsed = serving_config.read_serving_config(folder)
  [model] = parsed[serving_config.MODELS_CONFIG].model_config_list.config
  assert model.name == config.model_name and model.model_platform == 'tensorflow'
  # base_path is the model folder as mounted: <output>/serving_model/<model_name>.
  assert os.path.join(serving_model, mounted[model.base_path]) == config.serving_model_dir
  assert list(model.model_version_policy.specific.versions) == [5, 7]
  assert dict(model.version_labels) == {'stable': 5, 'canary': 7}
  batching = parsed[serving_config.BATCHING_CONFIG]
  assert batching.max_batch_size.value == config.serving.max_batch
  prometheus = parsed[serving_config.MONITORING_CONFIG].prometheus_config
  assert prometheus.enable
  annotations = _deployment()['spec']['template']['metadata']['annotations']
  assert annotations['prometheus.io/path'] == prometheus.path
  assert annotations['prometheus.io/port'] == args['rest_api_port']


def test_serving_config_follows_serving_max_batch_and_refuses_unknown_fields(tmp_path):
  base = str(tmp_path / 'serving_model' / 'm')
  folder = serving_config.write_serving_config(base, 'm', version=3, stable_version=None,
                                               max_batch=4)
  parsed = serving_config.read_serving_config(folder)
  assert parsed[serving_config.BATCHING_CONFIG].max_batch_size.value == 4
  [model] = parsed[serving_config.MODELS_CONFIG].model_config_list.config
  assert dict(model.version_labels) == {'stable': 3}
  assert not [n for n in os.listdir(folder) if '.tmp-' in n]
  with pytest.raises(text_format.ParseError):
    text_format.Parse('max_batch_size { value: 4 } max_batch: 4', serving_config.BatchingParameters())
