"""Requests in TF Serving's two wire formats, built from raw examples, and the warmup file.

REST (`POST /v1/models/<name>:predict`): `{"signature_name": ..., "instances": [{"b64":
...}]}`; a signature with one string input takes a list of base64 values.
gRPC: `tensorflow.serving.PredictRequest` (model_spec, inputs as TensorProtos).
Warmup: `assets.extra/tf_serving_warmup_requests`, a TFRecord of `PredictionLog`
records that TF Serving replays when it loads a version.
"""

import base64
import json
import os
from typing import Dict, Iterator, List, Optional, Sequence

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from contract.features import IMAGE_KEY

WARMUP_FILE = os.path.join('assets.extra', 'tf_serving_warmup_requests')
# The signatures' one input: a serialized tf.Example or the encoded image bytes.
EXAMPLES_INPUT = 'examples'
IMAGE_BYTES_INPUT = 'image_bytes'


# Lines of a TensorFlow error message that say where, not what.
_WHERE_LINES = ('Graph execution error', 'Detected at node', '<stack traces', '[[', 'File "')


def error_line(message: str) -> str:
  """The line of a (TensorFlow or TF Serving) error message that says what went wrong,
  e.g. `assertion failed: [Refused: more than serving.max_batch=2 images in one request]`."""
  lines = [line.strip() for line in str(message).splitlines()]
  useful = [line for line in lines if line and not line.startswith(_WHERE_LINES)]
  return useful[0] if useful else (lines[0] if lines else '')


def image_bytes_of(serialized_examples: Sequence[bytes]) -> List[bytes]:
  """The encoded image of each raw tf.Example."""
  images = []
  for serialized in serialized_examples:
    example = tf.train.Example.FromString(serialized)
    images.append(example.features.feature[IMAGE_KEY].bytes_list.value[0])
  return images


def input_values(input_name: str, serialized_examples: Sequence[bytes]) -> List[bytes]:
  """What a signature with input `input_name` takes for these examples."""
  if input_name == IMAGE_BYTES_INPUT:
    return image_bytes_of(serialized_examples)
  if input_name == EXAMPLES_INPUT:
    return list(serialized_examples)
  raise ValueError(f'No request can be built for a signature input named {input_name!r}.')


def rest_body(signature_name: str, values: Sequence[bytes]) -> str:
  """A REST predict body, binary values as `{"b64": ...}` as TF Serving's docs require."""
  return json.dumps({'signature_name': signature_name,
                     'instances': [{'b64': base64.b64encode(v).decode('ascii')} for v in values]})


def predict_request(model_name: str, signature_name: str, input_name: str,
                    values: Sequence[bytes],
                    version: Optional[int] = None) -> predict_pb2.PredictRequest:
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  if version is not None:
    request.model_spec.version.value = version
  request.inputs[input_name].CopyFrom(tf.make_tensor_proto(list(values), dtype=tf.string))
  return request


def write_warmup(model_dir: str, requests: Sequence[predict_pb2.PredictRequest]) -> str:
  """Writes `requests` as the version's warmup file; returns its path."""
  path = os.path.join(model_dir, WARMUP_FILE)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.TFRecordWriter(path) as writer:
    for request in requests:
      log = prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())
  return path


def read_warmup(model_dir: str) -> Iterator[predict_pb2.PredictRequest]:
  """The PredictRequests of a version's warmup file (as TF Serving reads it)."""
  for record in tf.data.TFRecordDataset(os.path.join(model_dir, WARMUP_FILE)):
    log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
    if log.WhichOneof('log_type') != 'predict_log':
      raise ValueError(f'Warmup record of kind {log.WhichOneof("log_type")}: only predict_log '
                       'is written here.')
    yield log.predict_log.request


def request_tensors(request: predict_pb2.PredictRequest) -> Dict[str, tf.Tensor]:
  """The input tensors of a PredictRequest, as the model server builds them."""
  return {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
