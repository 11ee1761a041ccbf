"""ServingCanary: the candidate model, served from its own files in a fresh process, before
the Pusher.

TFX's InfraValidator does this with a TF Serving binary in Docker or Kubernetes only,
and the Kubeflow V2 compiler refuses it. This component runs on every orchestrator:

1. copies the model to `<blessing>/stamped_model/` (as InfraValidator's `make_warmup`)
   and writes `assets.extra/tf_serving_warmup_requests` there: per serving signature,
   one request for each of the first two eval examples;
2. starts `components.serving.canary_probe` in a fresh process, which loads that copy
   with the `serve` tag, replays the warmup file, answers the same examples through
   every signature as REST bodies and as gRPC PredictRequests, and times REST requests
   at batch 1 and at `serving.max_batch`; this process watches its RSS and wall time;
3. checks: loaded (with warmup) within `canary.max_load_seconds`, every signature
   answered in both formats, the answers agree with `serving_default` called in this
   process (as the Evaluator calls it) within `canary.tolerance`, peak RSS within
   `canary.max_memory_mib`.

Its output is TFX's standard `InfraBlessing`: `blessed` 1 or 0, the INFRA_BLESSED or
INFRA_NOT_BLESSED file, and when blessed the warmed-up model with `has_model` = 1, which
the Pusher (given `infra_blessing` and no `model`) pushes, exactly as TFX's Pusher does
after InfraValidator. `canary/result.json` holds the figures and the failed checks.
A model the Evaluator did not bless is not probed (blessed 0, says so).
"""

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from components.serving import serving_requests
from contract.canary import CanaryConfig
from contract.settings import ServingConfig

RESULT_FOLDER = 'canary'
RESULT_FILE = 'result.json'
REFERENCE_SIGNATURE = 'serving_default'
TIMED_SIGNATURE = 'serving_image_bytes'  # what REST clients send; else serving_default
BLESSED_FILE, NOT_BLESSED_FILE = 'INFRA_BLESSED', 'INFRA_NOT_BLESSED'  # as InfraValidator
HAS_MODEL_KEY = 'has_model'  # the Pusher pushes <blessing>/stamped_model when set
_POLL_SECONDS = 0.2
WARMUP_EXAMPLES = 2  # per signature, one request each


@dataclasses.dataclass
class CanaryLimits(CanaryConfig):
  """The canary's checks: the `canary:` section and the signatures' batch limit."""
  max_batch: int = ServingConfig.max_batch


@dataclasses.dataclass
class CanaryResult:
  blessed: bool
  failures: List[str]
  load_seconds: Optional[float] = None
  warmup_requests: int = 0
  latency: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)
  peak_rss_mib: Optional[float] = None
  signatures: List[str] = dataclasses.field(default_factory=list)
  skipped: str = ''

  def line(self) -> str:
    """The console's one line: what passed with its figures, or the failed checks."""
    if self.skipped:
      return f'not run: {self.skipped}'
    figures = []
    if self.load_seconds is not None:
      figures.append(f'loaded in {self.load_seconds:.1f} s with {self.warmup_requests} '
                     'warmup requests')
    figures += [f'batch {batch} p50 {t["p50_ms"]:.0f} ms p99 {t["p99_ms"]:.0f} ms'
                for batch, t in sorted(self.latency.items(), key=lambda kv: int(kv[0]))
                if 'error' not in t]
    if self.peak_rss_mib is not None:
      figures.append(f'peak RSS {self.peak_rss_mib:.0f} MiB')
    if self.blessed:
      return (f'passed: {", ".join(figures)}; {len(self.signatures)} signatures answer over '
              'REST and gRPC as the Evaluator does')
    return f'failed: {"; ".join(self.failures)}' + (f' ({", ".join(figures)})' if figures else '')


def signature_inputs(model_dir: str) -> Dict[str, str]:
  """Serving signature -> its one input's name, read from saved_model.pb (what TF
  Serving reads; no TensorFlow graph is loaded here)."""
  saved_model = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(os.path.join(model_dir, 'saved_model.pb'), 'rb') as f:
    saved_model.ParseFromString(f.read())
  [graph] = [g for g in saved_model.meta_graphs if 'serve' in g.meta_info_def.tags]
  inputs = {}
  for name, signature in graph.signature_def.items():
    if name.startswith('__'):  # __saved_model_init_op and the like are not served
      continue
    if len(signature.inputs) != 1:
      raise ValueError(f'Signature {name!r} has inputs {sorted(signature.inputs)}; the canary '
                       'sends requests to signatures of one string input.')
    [inputs[name]] = signature.inputs
  return inputs


def read_examples(files: List[str], count: int) -> List[bytes]:
  """The first `count` serialized examples of a split's files."""
  gzipped = all(f.endswith('.gz') for f in files)
  dataset = tf.data.TFRecordDataset(files, compression_type='GZIP' if gzipped else '')
  return [record.numpy() for record in dataset.take(count)]


def _tiled(values: List[bytes], size: int) -> List[bytes]:
  return [values[i % len(values)] for i in range(size)]


def _write_plan(folder: str, model_dir: str, model_name: str, inputs: Dict[str, str],
                examples: List[bytes], limits: CanaryLimits) -> str:
  """The probe's requests, in both wire formats, and its plan; returns the plan's path."""
  checks, timed = [], []
  for name, input_name in sorted(inputs.items()):
    values = serving_requests.input_values(input_name, examples)
    rest, grpc = os.path.join(folder, f'{name}.json'), os.path.join(folder, f'{name}.pb')
    with open(rest, 'w') as f:
      f.write(serving_requests.rest_body(name, values))
    with open(grpc, 'wb') as f:
      f.write(serving_requests.predict_request(model_name, name, input_name,
                                               values).SerializeToString())
    checks.append({'signature': name, 'REST': rest, 'gRPC': grpc})
  timed_signature = TIMED_SIGNATURE if TIMED_SIGNATURE in inputs else REFERENCE_SIGNATURE
  values = serving_requests.input_values(inputs[timed_signature], examples)
  for batch in sorted({1, limits.max_batch}):
    path = os.path.join(folder, f'timed_batch_{batch}.json')
    with open(path, 'w') as f:
      f.write(serving_requests.rest_body(timed_signature, _tiled(values, batch)))
    timed.append({'signature': timed_signature, 'batch': batch, 'REST': path})
  plan = {'model_dir': model_dir, 'checks': checks, 'timed': timed,
          'repeats': limits.timed_requests, 'result': os.path.join(folder, RESULT_FILE)}
  path = os.path.join(folder, 'plan.json')
  with open(path, 'w') as f:
    json.dump(plan, f, indent=1)
  return path


def _rss_mib(pid: int) -> float:
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith('VmRSS:'):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return 0.0


def _run_probe(plan_path: str, limits: CanaryLimits) -> Optional[str]:
  """Runs the fresh process, killing it past the memory limit or the timeout; returns
  why it was stopped or failed, or None."""
  process = subprocess.Popen([sys.executable, '-m', 'components.serving.canary_probe',
                              plan_path])
  start = time.monotonic()
  while process.poll() is None:
    rss = _rss_mib(process.pid)
    if rss > limits.max_memory_mib:
      process.kill()
      process.wait()
      return (f'memory: RSS reached {rss:.0f} MiB > canary.max_memory_mib='
              f'{limits.max_memory_mib} (process stopped)')
    if time.monotonic() - start > limits.timeout_seconds:
      process.kill()
      process.wait()
      return f'time: no answer within canary.timeout_seconds={limits.timeout_seconds} (process stopped)'
    time.sleep(_POLL_SECONDS)
  return None if process.returncode in (0, 1) else f'process: exited with code {process.returncode}'


def _reference(model_dir: str, examples: List[bytes]) -> np.ndarray:
  """`serving_default` in this process, as the Evaluator (TFMA, tf_generic) calls it."""
  signature = tf.saved_model.load(model_dir).signatures[REFERENCE_SIGNATURE]
  # One example a call: the reference never depends on the batch size a model accepts.
  return np.concatenate([signature(examples=tf.constant([e]))['probabilities'].numpy()
                         for e in examples])


def _check(result: Dict[str, Any], reference: np.ndarray, limits: CanaryLimits) -> List[str]:
  failures = []
  if result['load_seconds'] > limits.max_load_seconds:
    failures.append(f'load time {result["load_seconds"]:.1f} s > canary.max_load_seconds='
                    f'{limits.max_load_seconds:g}')
  for signature, formats in sorted(result['answers'].items()):
    for fmt, answer in formats.items():
      if 'error' in answer:
        failures.append(f'{signature} ({fmt}) did not answer: {answer["error"]}')
        continue
      got = np.asarray(answer['probabilities'], dtype=np.float64)
      difference = (np.max(np.abs(got - reference)) if got.shape == reference.shape
                    else float('inf'))
      if not difference <= limits.tolerance:
        failures.append(f'{signature} ({fmt}) disagrees with the Evaluator\'s serving_default '
                        f'by {difference:.2g} > canary.tolerance={limits.tolerance:g}')
  for batch, figures in sorted(result['latency'].items(), key=lambda kv: int(kv[0])):
    if 'error' in figures:
      failures.append(f'{figures["signature"]} (REST) at batch {batch} did not answer: '
                      f'{figures["error"]}')
  if result['peak_rss_mib'] > limits.max_memory_mib:
    failures.append(f'peak RSS {result["peak_rss_mib"]:.0f} MiB > canary.max_memory_mib='
                    f'{limits.max_memory_mib}')
  return failures


def run_canary(model_dir: str, example_files: List[str], output_dir: str, model_name: str,
               limits: CanaryLimits) -> CanaryResult:
  """Steps 1-3 of the module docstring; the warmed-up copy `<output_dir>/stamped_model`
  is kept only when every check passed (the Trainer's model stays where it was)."""
  stamped = path_utils.stamped_model_path(output_dir)
  io_utils.copy_dir(model_dir, stamped)
  inputs = signature_inputs(stamped)
  examples = read_examples(example_files, limits.num_examples)
  if not examples:
    raise ValueError(f'No examples to build serving requests from in {example_files}.')
  warmup = [serving_requests.predict_request(
      model_name, name, input_name, serving_requests.input_values(input_name, [example]))
            for name, input_name in sorted(inputs.items())
            for example in examples[:WARMUP_EXAMPLES]]
  serving_requests.write_warmup(stamped, warmup)
  with tempfile.TemporaryDirectory(prefix='serving-canary-') as folder:  # local, any output URI
    plan = _write_plan(folder, stamped, model_name, inputs, examples[:limits.max_batch], limits)
    stopped = _run_probe(plan, limits)
    result_path = os.path.join(folder, RESULT_FILE)
    probe = {}
    if os.path.exists(result_path):
      with open(result_path) as f:
        probe = json.load(f)
  failures = [stopped] if stopped else []
  if 'error' in probe:
    failures.append(f'load: {probe["error"]}')
  elif probe and not stopped:
    failures += _check(probe, _reference(model_dir, examples[:limits.max_batch]), limits)
  elif not stopped:
    failures.append('process: wrote no result')
  if failures:
    io_utils.delete_dir(stamped)
  return CanaryResult(blessed=not failures, failures=failures,
                      load_seconds=probe.get('load_seconds'),
                      warmup_requests=probe.get('warmup_requests', 0),
                      latency=probe.get('latency', {}), peak_rss_mib=probe.get('peak_rss_mib'),
                      signatures=sorted(inputs))


def write_result(result: CanaryResult, output_dir: str) -> None:
  folder = os.path.join(output_dir, RESULT_FOLDER)
  tf.io.gfile.makedirs(folder)
  with tf.io.gfile.GFile(os.path.join(folder, RESULT_FILE), 'w') as f:
    json.dump({**dataclasses.asdict(result), 'line': result.line()}, f, indent=1)


def load_result(blessing_uri: str) -> Optional[Dict[str, Any]]:
  """What `write_result` wrote into an InfraBlessing; None if it is not there."""
  path = os.path.join(blessing_uri, RESULT_FOLDER, RESULT_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _mark(blessing: tfx.dsl.Artifact, result: CanaryResult) -> None:
  io_utils.write_string_file(
      os.path.join(blessing.uri, BLESSED_FILE if result.blessed else NOT_BLESSED_FILE), '')
  blessing.set_int_custom_property('blessed', int(result.blessed))
  blessing.set_int_custom_property(HAS_MODEL_KEY, int(result.blessed))
  blessing.set_string_custom_property('canary', result.line())
  if result.load_seconds is not None:
    blessing.set_float_custom_property('load_seconds', result.load_seconds)
  if result.peak_rss_mib is not None:
    blessing.set_float_custom_property('peak_rss_mib', result.peak_rss_mib)
  for batch, figures in result.latency.items():
    for name in ('p50_ms', 'p99_ms'):
      if name in figures:
        blessing.set_float_custom_property(f'batch_{batch}_{name}', figures[name])


@tfx.dsl.components.component
def ServingCanary(
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    blessing: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.InfraBlessing],
    model_blessing: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ModelBlessing] = None,
    model_name: tfx.dsl.components.Parameter[str] = 'image_classifier',
    split: tfx.dsl.components.Parameter[str] = 'eval',
    max_batch: tfx.dsl.components.Parameter[int] = CanaryLimits.max_batch,
    max_load_seconds: tfx.dsl.components.Parameter[float] = CanaryLimits.max_load_seconds,
    max_memory_mib: tfx.dsl.components.Parameter[int] = CanaryLimits.max_memory_mib,
    tolerance: tfx.dsl.components.Parameter[float] = CanaryLimits.tolerance,
    num_examples: tfx.dsl.components.Parameter[int] = CanaryLimits.num_examples,
    timed_requests: tfx.dsl.components.Parameter[int] = CanaryLimits.timed_requests,
    timeout_seconds: tfx.dsl.components.Parameter[int] = CanaryLimits.timeout_seconds,
) -> None:
  """Serves the candidate in a fresh process and writes TFX's InfraBlessing."""
  if model_blessing is not None and model_blessing.get_int_custom_property('blessed') != 1:
    result = CanaryResult(blessed=False, failures=[],
                          skipped='the Evaluator did not bless the model')
  else:
    limits = CanaryLimits(max_load_seconds=max_load_seconds, max_memory_mib=max_memory_mib,
                          tolerance=tolerance, num_examples=num_examples,
                          timed_requests=timed_requests, timeout_seconds=timeout_seconds,
                          max_batch=max_batch)
    model_dir = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
    files = sorted(tf.io.gfile.glob(os.path.join(
        artifact_utils.get_split_uri([examples], split), '*')))
    result = run_canary(model_dir, files, blessing.uri, model_name, limits)
  write_result(result, blessing.uri)
  _mark(blessing, result)
  print(f'ServingCanary: {result.line()}')
