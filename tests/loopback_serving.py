"""A loopback stand-in for TF Serving, started by tests: its documented REST and gRPC
predict APIs, answered by running the SavedModels of `<base>/<version>/` folders.

No TF Serving binary runs here; this server follows the public API:
  REST  GET  /v1/models/<name>[/versions/<v>]/metadata
        POST /v1/models/<name>[/versions/<v>]:predict
             {"signature_name": ..., "instances": [{"b64": ...}, ...]} -> {"predictions": [...]}
             errors: {"error": "..."} with HTTP 400 (bad request) or 404 (no such servable)
  gRPC  tensorflow.serving.PredictionService: Predict, GetModelMetadata
             errors: INVALID_ARGUMENT, NOT_FOUND
It is written from that documentation, independently of the project's canary.
"""

import base64
import concurrent.futures
import http.server
import json
import os
import re
import threading
from typing import Dict, Optional, Tuple

import grpc
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, predict_pb2,
                                     prediction_service_pb2_grpc)

_PATH = re.compile(r'^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?'
                   r'(?P<verb>:predict|/metadata)$')


class NotFound(Exception):
  pass


class Servables:
  """Model name -> base folder; versions are its numeric subfolders, loaded on first use."""

  def __init__(self, bases: Dict[str, str]):
    self.bases = bases
    self._loaded: Dict[Tuple[str, int], object] = {}
    self._lock = threading.Lock()
    self.predict_calls = 0

  def _version_dir(self, name: str, version: Optional[int]) -> Tuple[int, str]:
    base = self.bases.get(name)
    versions = sorted(int(v) for v in os.listdir(base) if v.isdigit()) if base else []
    if not versions or (version is not None and version not in versions):
      spec = f'Specific({name}, {version})' if version is not None else f'Latest({name})'
      raise NotFound(f'Servable not found for request: {spec}')
    version = versions[-1] if version is None else version
    return version, os.path.join(base, str(version))

  def model(self, name: str, version: Optional[int]):
    version, folder = self._version_dir(name, version)
    with self._lock:
      if (name, version) not in self._loaded:
        self._loaded[(name, version)] = tf.saved_model.load(folder)
      return self._loaded[(name, version)]

  def signature_defs(self, name: str, version: Optional[int]) -> get_model_metadata_pb2.SignatureDefMap:
    _, folder = self._version_dir(name, version)
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(folder, 'saved_model.pb'), 'rb') as f:
      saved_model.ParseFromString(f.read())
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, value in saved_model.meta_graphs[0].signature_def.items():
      if not key.startswith('__'):
        signatures.signature_def[key].CopyFrom(value)
    return signatures

  def predict(self, name: str, version: Optional[int], signature_name: str,
              inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    model = self.model(name, version)
    signature_name = signature_name or 'serving_default'
    if signature_name not in model.signatures:
      raise ValueError(f"Serving signature name: \"{signature_name}\" not found in signature def")
    self.predict_calls += 1
    return model.signatures[signature_name](**inputs)


def _rest_value(name: str, value):
  if isinstance(value, bytes):
    if name.endswith('_bytes'):
      return {'b64': base64.b64encode(value).decode('ascii')}
    return value.decode('utf-8', errors='replace')
  return value


def _rest_predict(servables: Servables, name, version, body: dict) -> dict:
  signature_name = body.get('signature_name', 'serving_default')
  model = servables.model(name, version)
  if signature_name not in model.signatures:
    raise ValueError(f"Serving signature name: \"{signature_name}\" not found in signature def")
  [input_name] = model.signatures[signature_name].structured_input_signature[1]
  values = []
  for instance in body['instances']:
    if isinstance(instance, dict) and set(instance) == {'b64'}:
      values.append(base64.b64decode(instance['b64']))
    else:
      values.append(instance)
  outputs = servables.predict(name, version, signature_name, {input_name: tf.constant(values)})
  columns = {k: v.numpy().tolist() for k, v in outputs.items()}
  return {'predictions': [{k: _rest_value(k, columns[k][i]) for k in columns}
                          for i in range(len(values))]}


def _handler(servables: Servables):

  class Handler(http.server.BaseHTTPRequestHandler):

    def log_message(self, *args):  # quiet
      pass

    def _answer(self, code: int, payload: dict) -> None:
      data = json.dumps(payload).encode()
      self.send_response(code)
      self.send_header('Content-Type', 'application/json')
      self.send_header('Content-Length', str(len(data)))
      self.end_headers()
      self.wfile.write(data)

    def _route(self, verb: str):
      match = _PATH.match(self.path)
      if not match or match['verb'] != verb:
        return self._answer(404, {'error': f'Malformed request: {self.command} {self.path}'})
      name = match['name']
      version = int(match['version']) if match['version'] else None
      try:
        if verb == '/metadata':
          signatures = servables.signature_defs(name, version)
          return self._answer(200, {
              'model_spec': {'name': name, 'signature_name': '',
                             'version': str(version or '')},
              'metadata': {'signature_def': json_format.MessageToDict(
                  signatures, preserving_proto_field_name=True)}})
        body = json.loads(self.rfile.read(int(self.headers.get('Content-Length', 0))))
        return self._answer(200, _rest_predict(servables, name, version, body))
      except NotFound as e:
        return self._answer(404, {'error': str(e)})
      except (ValueError, KeyError, tf.errors.InvalidArgumentError) as e:
        return self._answer(400, {'error': getattr(e, 'message', None) or str(e)})

    def do_GET(self):  # pylint: disable=invalid-name
      self._route('/metadata')

    def do_POST(self):  # pylint: disable=invalid-name
      self._route(':predict')

  return Handler


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):

  def __init__(self, servables: Servables):
    self.servables = servables

  @staticmethod
  def _version(spec) -> Optional[int]:
    return spec.version.value if spec.HasField('version') else None

  def Predict(self, request, context):  # pylint: disable=invalid-name
    try:
      inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
      outputs = self.servables.predict(request.model_spec.name, self._version(request.model_spec),
                                       request.model_spec.signature_name, inputs)
    except NotFound as e:
      context.abort(grpc.StatusCode.NOT_FOUND, str(e))
    except (ValueError, tf.errors.InvalidArgumentError) as e:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, getattr(e, 'message', None) or str(e))
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for name, tensor in outputs.items():
      response.outputs[name].CopyFrom(tf.make_tensor_proto(tensor.numpy()))
    return response

  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    try:
      signatures = self.servables.signature_defs(request.model_spec.name,
                                                 self._version(request.model_spec))
    except NotFound as e:
      context.abort(grpc.StatusCode.NOT_FOUND, str(e))
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.CopyFrom(request.model_spec)
    response.metadata['signature_def'].Pack(signatures)
    return response


class LoopbackServing:
  """REST on http://127.0.0.1:<rest_port>, gRPC on grpc://127.0.0.1:<grpc_port>."""

  def __init__(self, bases: Dict[str, str]):
    self.servables = Servables(bases)
    self._http = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _handler(self.servables))
    self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
    self._grpc = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        _PredictionService(self.servables), self._grpc)
    self.grpc_port = self._grpc.add_insecure_port('127.0.0.1:0')

  @property
  def rest_url(self) -> str:
    return f'http://127.0.0.1:{self._http.server_address[1]}'

  @property
  def grpc_url(self) -> str:
    return f'grpc://127.0.0.1:{self.grpc_port}'

  def __enter__(self) -> 'LoopbackServing':
    self._thread.start()
    self._grpc.start()
    return self

  def __exit__(self, *exc) -> None:
    self._http.shutdown()
    self._http.server_close()
    self._grpc.stop(grace=None)
