"""`transfer-pipeline predict --server URL`: the images go to a running TF Serving.

    --server http://HOST:8501   REST: POST /v1/models/<name>[/versions/<v>]:predict,
                                 {"signature_name", "instances": [{"b64": ...}]}
    --server grpc://HOST:8500   gRPC: tensorflow.serving.PredictionService/Predict

Both clients are what `tools.batch_predict` calls in place of the in-process model
(images -> probabilities [B, classes]), so the output, batching, progress and skip
reasons are the same. Before the first image, the model's metadata (REST
`GET .../metadata`, gRPC GetModelMetadata) tells whether the model, version and
signature exist and how many classes it has. A refused request (HTTP 400,
INVALID_ARGUMENT) raises `tf.errors.InvalidArgumentError`, so a refused batch is retried
image by image and a refused image is skipped, as in-process; but if the server also
refuses a known-good image, it refuses every request and the run stops with its error.
"""

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from components.serving import serving_requests
from contract.features import IMAGE_BYTES_SIGNATURE
from tools.server_address import parse_server
from trainer import export

TIMEOUT_SECONDS = 60.0
PROBABILITIES = 'probabilities'


class ServingError(Exception):
  """The server cannot be used: unreachable, no such model/version/signature, or it
  refuses every request. One line, the server's own message included."""


class RefusedRequest(tf.errors.InvalidArgumentError):
  """The server refused a request (HTTP 400 / INVALID_ARGUMENT): its error message."""

  def __init__(self, message: str):
    super().__init__(None, None, message)


def _model_description(name: str, version: Optional[int]) -> str:
  return f'model {name!r}' + (f' version {version}' if version is not None else '')


def _known_good_image() -> bytes:
  return tf.io.encode_png(tf.fill([8, 8, 3], tf.constant(128, tf.uint8))).numpy()


class _ServerClassifier:
  """Shared by both protocols: metadata -> class names; refusal handling."""

  def __init__(self, source: str, model_name: str, version: Optional[int],
               class_names: Sequence[str], signature: str):
    self.source, self.model_name, self.version, self.signature = (
        source, model_name, version, signature)
    signatures = self._signature_defs()
    if signature not in signatures.signature_def:
      raise ServingError(f'{source}: {_model_description(model_name, version)} has no signature '
                         f'{signature!r} (it has: {", ".join(sorted(signatures.signature_def))}).')
    outputs = signatures.signature_def[signature].outputs
    if PROBABILITIES not in outputs:
      raise ServingError(f'{source}: signature {signature!r} has no {PROBABILITIES!r} output.')
    num_classes = int(outputs[PROBABILITIES].tensor_shape.dim[-1].size)
    if class_names and len(class_names) != num_classes:
      raise ServingError(f'--class-names: {len(class_names)} names, but {source} has '
                         f'{num_classes} classes.')
    self.class_names = export.fallback_class_names(num_classes, class_names)
    self.image_size: Optional[int] = None  # set by connect()
    self._server_answers_good_images: Optional[bool] = None

  def _signature_defs(self) -> get_model_metadata_pb2.SignatureDefMap:
    raise NotImplementedError

  def _predict(self, images: List[bytes]) -> np.ndarray:
    raise NotImplementedError

  def __call__(self, images: Sequence[bytes]) -> np.ndarray:
    try:
      return self._predict(list(images))
    except RefusedRequest as refused:
      if len(images) == 1 and not self._answers_a_good_image():
        raise ServingError(f'{self.source} refused the request: {refused.message}') from None
      raise

  def _answers_a_good_image(self) -> bool:
    if self._server_answers_good_images is None:
      try:
        self._predict([_known_good_image()])
        self._server_answers_good_images = True
      except RefusedRequest:
        self._server_answers_good_images = False
    return self._server_answers_good_images


class RestClassifier(_ServerClassifier):
  """TF Serving's REST API (`http://HOST:8501`)."""

  def __init__(self, url: str, model_name: str, version: Optional[int] = None,
               class_names: Sequence[str] = (), signature: str = IMAGE_BYTES_SIGNATURE):
    base = url.rstrip('/') + f'/v1/models/{urllib.parse.quote(model_name)}'
    self._url = base + (f'/versions/{version}' if version is not None else '')
    super().__init__(self._url, model_name, version, class_names, signature)

  def _request(self, url: str, body: Optional[str] = None) -> dict:
    request = urllib.request.Request(url, data=body.encode() if body is not None else None,
                                     headers={'Content-Type': 'application/json'})
    try:
      with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        return json.loads(response.read())
    except urllib.error.HTTPError as e:
      message = _error_body(e)
      if e.code == 400:
        raise RefusedRequest(message) from None
      if e.code == 404:
        raise ServingError(f'{url}: {_model_description(self.model_name, self.version)} not '
                           f'found: {message}') from None
      raise ServingError(f'{url} answered HTTP {e.code}: {message}') from None
    except (urllib.error.URLError, OSError) as e:
      reason = getattr(e, 'reason', e)
      raise ServingError(f'cannot reach {url}: {reason}') from None

  def _signature_defs(self) -> get_model_metadata_pb2.SignatureDefMap:
    metadata = self._request(self._url + '/metadata')
    return json_format.ParseDict(metadata['metadata']['signature_def'],
                                 get_model_metadata_pb2.SignatureDefMap(),
                                 ignore_unknown_fields=True)

  def _predict(self, images: List[bytes]) -> np.ndarray:
    answer = self._request(self._url + ':predict',
                           serving_requests.rest_body(self.signature, images))
    return np.asarray([row[PROBABILITIES] for row in answer['predictions']], dtype=np.float32)


def _error_body(error: urllib.error.HTTPError) -> str:
  """TF Serving's `{"error": "..."}`, or the body as text."""
  body = error.read().decode('utf-8', errors='replace')
  try:
    return serving_requests.error_line(json.loads(body)['error'])
  except (ValueError, KeyError, TypeError):
    return serving_requests.error_line(body) or error.reason


class GrpcClassifier(_ServerClassifier):
  """TF Serving's gRPC API (`grpc://HOST:8500`)."""

  def __init__(self, address: str, model_name: str, version: Optional[int] = None,
               class_names: Sequence[str] = (), signature: str = IMAGE_BYTES_SIGNATURE):
    import grpc  # pylint: disable=g-import-not-at-top
    from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top
    self._grpc = grpc
    self._address = address
    self._channel = grpc.insecure_channel(address)
    self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
    super().__init__(f'grpc://{address}', model_name, version, class_names, signature)

  def _call(self, method, request):
    try:
      return method(request, timeout=TIMEOUT_SECONDS)
    except self._grpc.RpcError as e:
      code, message = e.code(), serving_requests.error_line(e.details() or '')
      if code == self._grpc.StatusCode.INVALID_ARGUMENT:
        raise RefusedRequest(message) from None
      if code == self._grpc.StatusCode.NOT_FOUND:
        raise ServingError(f'{self.source}: {_model_description(self.model_name, self.version)}'
                           f' not found: {message}') from None
      if code in (self._grpc.StatusCode.UNAVAILABLE, self._grpc.StatusCode.DEADLINE_EXCEEDED):
        raise ServingError(f'cannot reach {self.source}: {message}') from None
      raise ServingError(f'{self.source} answered {code.name}: {message}') from None

  def _model_spec(self, message) -> None:
    message.model_spec.name = self.model_name
    if self.version is not None:
      message.model_spec.version.value = self.version

  def _signature_defs(self) -> get_model_metadata_pb2.SignatureDefMap:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=['signature_def'])
    self._model_spec(request)
    response = self._call(self._stub.GetModelMetadata, request)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata['signature_def'].Unpack(signatures)
    return signatures

  def _predict(self, images: List[bytes]) -> np.ndarray:
    request = serving_requests.predict_request(self.model_name, self.signature,
                                               serving_requests.IMAGE_BYTES_INPUT, images,
                                               self.version)
    response = self._call(self._stub.Predict, request)
    return tf.make_ndarray(response.outputs[PROBABILITIES])


def connect(server: str, model_name: str, version: Optional[int] = None,
            class_names: Sequence[str] = (), image_size: Optional[int] = None
            ) -> _ServerClassifier:
  """The classifier for `--server`: REST for http(s)://, gRPC for grpc://.

  `image_size`: the served model's input size (TF Serving's metadata does not tell it);
  images are then sent as ingestion stores them (downscaled to data.max_side_multiple
  times it), as `predict --model` prepares them.
  """
  parsed = parse_server(server)
  if parsed.scheme == 'grpc':
    classifier = GrpcClassifier(parsed.netloc, model_name, version, class_names)
  else:
    classifier = RestClassifier(f'{parsed.scheme}://{parsed.netloc}', model_name, version,
                                class_names)
  classifier.image_size = image_size
  return classifier
