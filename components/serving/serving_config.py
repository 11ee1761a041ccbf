"""The TF Serving configuration of a pushed model, as the text protos the server reads.

    models.config      ModelServerConfig (--model_config_file): the model's name, base
                       path, the versions to serve and their `stable`/`canary` labels
    batching.config    BatchingParameters (--batching_parameters_file): max_batch_size
                       = serving.max_batch, the most images a signature accepts
    monitoring.config  MonitoringConfig (--monitoring_config_file): Prometheus metrics

The Pusher writes them after each push into `serving_config/` beside the model's folder
(`<output>/serving_model/serving_config/`), which `kubeflow/serving/deployment.yaml`
mounts at /config. `models.config` is the real tensorflow-serving-api proto; the
batching and monitoring protos are not in that package, so they are declared here with
the fields (names, numbers, types) of tensorflow_serving's
`servables/tensorflow/session_bundle_config.proto` and `config/monitoring_config.proto`
that this module writes: a field TF Serving does not know fails to parse here too.
"""

import os
import uuid
from typing import Dict, Optional

from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory
from google.protobuf import text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2
from tfx.dsl.io import fileio

CONFIG_FOLDER = 'serving_config'
MODELS_CONFIG = 'models.config'
BATCHING_CONFIG = 'batching.config'
MONITORING_CONFIG = 'monitoring.config'
# Where the Deployment mounts the model's folder and the config folder.
MODEL_MOUNT = '/models'
CONFIG_MOUNT = '/config'
PROMETHEUS_PATH = '/monitoring/prometheus/metrics'
STABLE, CANARY = 'stable', 'canary'

# TF Serving's batching scheduler: a batch waits at most this long for more requests.
BATCH_TIMEOUT_MICROS = 5_000
MAX_ENQUEUED_BATCHES = 100
NUM_BATCH_THREADS = 2


def _declared_messages() -> Dict[str, type]:
  """BatchingParameters and MonitoringConfig, declared as upstream declares them."""
  pool = descriptor_pool.DescriptorPool()
  pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
  proto = descriptor_pb2.FileDescriptorProto(
      name='transfer_pipeline/tf_serving_config.proto', package='tensorflow.serving',
      syntax='proto3', dependency=['google/protobuf/wrappers.proto'])
  field = descriptor_pb2.FieldDescriptorProto
  batching = proto.message_type.add(name='BatchingParameters')
  for number, name in enumerate(('max_batch_size', 'batch_timeout_micros',
                                 'max_enqueued_batches', 'num_batch_threads'), start=1):
    batching.field.add(name=name, number=number, type=field.TYPE_MESSAGE,
                       label=field.LABEL_OPTIONAL, type_name='.google.protobuf.Int64Value')
  batching.field.add(name='thread_pool_name', number=5, type=field.TYPE_MESSAGE,
                     label=field.LABEL_OPTIONAL, type_name='.google.protobuf.StringValue')
  batching.field.add(name='allowed_batch_sizes', number=6, type=field.TYPE_INT64,
                     label=field.LABEL_REPEATED)
  batching.field.add(name='pad_variable_length_inputs', number=7, type=field.TYPE_BOOL,
                     label=field.LABEL_OPTIONAL)
  prometheus = proto.message_type.add(name='PrometheusConfig')
  prometheus.field.add(name='enable', number=1, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL)
  prometheus.field.add(name='path', number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
  monitoring = proto.message_type.add(name='MonitoringConfig')
  monitoring.field.add(name='prometheus_config', number=1, type=field.TYPE_MESSAGE,
                       label=field.LABEL_OPTIONAL, type_name='.tensorflow.serving.PrometheusConfig')
  pool.Add(proto)
  factory = message_factory.MessageFactory(pool)
  return {name: factory.GetPrototype(pool.FindMessageTypeByName(f'tensorflow.serving.{name}'))
          for name in ('BatchingParameters', 'MonitoringConfig')}


_MESSAGES = _declared_messages()
BatchingParameters = _MESSAGES['BatchingParameters']
MonitoringConfig = _MESSAGES['MonitoringConfig']


def models_config(model_name: str, version: int,
                  stable_version: Optional[int] = None) -> model_server_config_pb2.ModelServerConfig:
  """Serves `version` (label `canary`) beside `stable_version` (label `stable`, the newest
  version before this push); the first push is `stable` alone. Requests that name no
  version get the highest loaded one, the new version: address `labels/stable` to stay
  on the previous one until the canary is promoted."""
  config = model_server_config_pb2.ModelServerConfig()
  model = config.model_config_list.config.add(
      name=model_name, base_path=f'{MODEL_MOUNT}/{model_name}', model_platform='tensorflow')
  versions = sorted({version, stable_version or version})
  model.model_version_policy.specific.versions.extend(versions)
  if stable_version and stable_version != version:
    model.version_labels[STABLE] = stable_version
    model.version_labels[CANARY] = version
  else:
    model.version_labels[STABLE] = version
  return config


def batching_parameters(max_batch: int) -> message.Message:
  """Server-side batching that never forms a batch the signatures refuse."""
  parameters = BatchingParameters()
  parameters.max_batch_size.value = max_batch
  parameters.batch_timeout_micros.value = BATCH_TIMEOUT_MICROS
  parameters.max_enqueued_batches.value = MAX_ENQUEUED_BATCHES
  parameters.num_batch_threads.value = NUM_BATCH_THREADS
  return parameters


def monitoring_config() -> message.Message:
  config = MonitoringConfig()
  config.prometheus_config.enable = True
  config.prometheus_config.path = PROMETHEUS_PATH
  return config


def config_folder(base_directory: str) -> str:
  """`<output>/serving_model/<model_name>` -> `<output>/serving_model/serving_config`."""
  return os.path.join(os.path.dirname(base_directory.rstrip('/')), CONFIG_FOLDER)


def _write_atomically(path: str, text: str) -> None:
  """A server polling the file never reads half of it (rename within one folder)."""
  temporary = f'{path}.tmp-{uuid.uuid4().hex[:8]}'
  with fileio.open(temporary, 'w') as f:
    f.write(text)
  fileio.rename(temporary, path, overwrite=True)


def write_serving_config(base_directory: str, model_name: str, version: int,
                         stable_version: Optional[int], max_batch: int) -> str:
  """Writes the three files for a push of `version`; returns their folder."""
  folder = config_folder(base_directory)
  fileio.makedirs(folder)
  files = {MODELS_CONFIG: models_config(model_name, version, stable_version),
           BATCHING_CONFIG: batching_parameters(max_batch),
           MONITORING_CONFIG: monitoring_config()}
  for name, proto in files.items():
    _write_atomically(os.path.join(folder, name), text_format.MessageToString(proto))
  return folder


def read_serving_config(folder: str) -> Dict[str, message.Message]:
  """Parses the three files with their protos (unknown fields fail)."""
  types = {MODELS_CONFIG: model_server_config_pb2.ModelServerConfig,
           BATCHING_CONFIG: BatchingParameters, MONITORING_CONFIG: MonitoringConfig}
  parsed = {}
  for name, proto_type in types.items():
    with fileio.open(os.path.join(folder, name)) as f:
      parsed[name] = text_format.Parse(f.read(), proto_type())
  return parsed
