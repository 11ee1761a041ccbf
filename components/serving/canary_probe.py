"""The serving canary's fresh process: plays the model server on a pushed version's files.

    python -m components.serving.canary_probe <plan.json>

Loads the version with the `serve` tag, as TF Serving does, and replays its warmup file
(the version counts as loaded after both); then answers each planned request as the
server would: a REST body is decoded from its JSON (`{"b64": ...}` -> bytes) and its
answer encoded as TF Serving's `{"predictions": [...]}`; a gRPC PredictRequest is parsed
from its serialized bytes and its answer built as a PredictResponse. Each answer is
decoded again as a client reads it. Then times REST requests at each planned batch size.
Writes `result.json` (plan's `result`): load time, answers or errors per signature and
format, latency percentiles, peak RSS.
"""

import base64
import json
import resource
import sys
import time
from typing import Any, Dict, List

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from components.serving import serving_requests

PROBABILITIES = 'probabilities'


def _one_line(error: BaseException) -> str:
  message = getattr(error, 'message', '') or str(error)
  return f'{type(error).__name__}: {serving_requests.error_line(message)}'


def _json_value(value: Any) -> Any:
  if isinstance(value, bytes):
    try:
      return value.decode('utf-8')
    except UnicodeDecodeError:
      return {'b64': base64.b64encode(value).decode('ascii')}
  return value


def answer_rest(signature, body: str) -> str:
  """A REST predict body -> TF Serving's row-format answer (`predictions`, one per instance)."""
  request = json.loads(body)
  [input_name] = signature.structured_input_signature[1]
  values = [base64.b64decode(item['b64']) if isinstance(item, dict) else item.encode()
            for item in request['instances']]
  outputs = {k: v.numpy().tolist() for k, v in
             signature(**{input_name: tf.constant(values, dtype=tf.string)}).items()}
  rows = [{name: _json_value(outputs[name][i]) for name in sorted(outputs)}
          for i in range(len(values))]
  return json.dumps({'predictions': rows})


def answer_grpc(signature, serialized_request: bytes) -> bytes:
  """A serialized PredictRequest -> a serialized PredictResponse."""
  request = predict_pb2.PredictRequest.FromString(serialized_request)
  outputs = signature(**serving_requests.request_tensors(request))
  response = predict_pb2.PredictResponse()
  response.model_spec.CopyFrom(request.model_spec)
  for name, tensor in outputs.items():
    response.outputs[name].CopyFrom(tf.make_tensor_proto(tensor.numpy()))
  return response.SerializeToString()


def rest_probabilities(answer: str) -> List[List[float]]:
  return [row[PROBABILITIES] for row in json.loads(answer)['predictions']]


def grpc_probabilities(answer: bytes) -> List[List[float]]:
  response = predict_pb2.PredictResponse.FromString(answer)
  return tf.make_ndarray(response.outputs[PROBABILITIES]).tolist()


def _peak_rss_mib() -> float:
  """This process's peak RSS: VmHWM, which starts afresh at exec (getrusage's ru_maxrss
  does not: it keeps the forking pipeline process's peak)."""
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) / 1024  # kB
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB


def _load(model_dir: str):
  """The version as TF Serving loads it: `serve` tag, then its warmup requests."""
  start = time.perf_counter()
  loaded = tf.saved_model.load(model_dir, tags=['serve'])
  warmup = 0
  for request in serving_requests.read_warmup(model_dir):
    signature = loaded.signatures[request.model_spec.signature_name or 'serving_default']
    signature(**serving_requests.request_tensors(request))
    warmup += 1
  return loaded, warmup, time.perf_counter() - start


def _answers(loaded, checks: List[Dict[str, str]]) -> Dict[str, Dict[str, Any]]:
  answers = {}
  for check in checks:
    name = check['signature']
    answers[name] = {}
    for fmt, answer, decode, mode in (('REST', answer_rest, rest_probabilities, 'r'),
                                      ('gRPC', answer_grpc, grpc_probabilities, 'rb')):
      try:
        with open(check[fmt], mode) as f:
          request = f.read()
        answers[name][fmt] = {'probabilities': decode(answer(loaded.signatures[name], request))}
      except Exception as e:  # pylint: disable=broad-except  (reported as the failed check)
        answers[name][fmt] = {'error': _one_line(e)}
  return answers


def _latencies(loaded, timed: List[Dict[str, Any]], repeats: int) -> Dict[str, Dict[str, float]]:
  latency = {}
  for item in timed:
    with open(item['REST']) as f:
      body = f.read()
    signature = loaded.signatures[item['signature']]
    seconds = []
    try:
      for _ in range(repeats):
        start = time.perf_counter()
        rest_probabilities(answer_rest(signature, body))
        seconds.append(time.perf_counter() - start)
    except Exception as e:  # pylint: disable=broad-except  (reported as the failed check)
      latency[str(item['batch'])] = {'signature': item['signature'], 'error': _one_line(e)}
      continue
    latency[str(item['batch'])] = {
        'p50_ms': float(np.percentile(seconds, 50) * 1000),
        'p99_ms': float(np.percentile(seconds, 99) * 1000)}
  return latency


def main(plan_path: str) -> int:
  with open(plan_path) as f:
    plan = json.load(f)
  result: Dict[str, Any] = {}
  try:
    loaded, result['warmup_requests'], result['load_seconds'] = _load(plan['model_dir'])
    result['answers'] = _answers(loaded, plan['checks'])
    result['latency'] = _latencies(loaded, plan['timed'], plan['repeats'])
  except Exception as e:  # pylint: disable=broad-except
    result['error'] = _one_line(e)
  result['peak_rss_mib'] = _peak_rss_mib()
  with open(plan['result'], 'w') as f:
    json.dump(result, f)
  return 1 if 'error' in result else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1]))
