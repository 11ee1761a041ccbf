"""Pusher executor that publishes a model version atomically.

The stock Pusher copies files straight into `<base>/<version>/`, so a model server
polling the base directory can see a half-written version. This executor copies
into a hidden staging folder beside it and renames that folder into place:

    <base>/.staging-<version>-<random>/   (TF Serving ignores non-numeric names)
      -> rename ->  <base>/<version>/

A rename within one local or mounted POSIX filesystem is atomic. Object stores
(gs://, s3://) have no folder rename (TensorFlow copies object by object, in name
order, so `saved_model.pb` would land before `variables/`); there the model is
copied straight into `<version>/` with `saved_model.pb` last, as the stock Pusher
does, and readers rely on TF Serving's rule that a version is complete once
`saved_model.pb` exists. Failures (disk full, permission denied) remove what was
partly written and never touch versions that were already pushed.

`AtomicPusher` is the stock Pusher component with this executor: same inputs,
outputs, blessing check and PushedModel artifact.
"""

import os
import time
import uuid
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx import v1 as tfx
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

STAGING_PREFIX = '.staging-'


class PushError(RuntimeError):
  """The model could not be published; already pushed versions are untouched."""


def next_version(base_directory: str) -> str:
  """Unix time in seconds, bumped past the newest existing version if needed."""
  existing = [int(n) for n in fileio.listdir(base_directory) if n.isdigit()] \
      if fileio.exists(base_directory) else []
  return str(max([int(time.time())] + [v + 1 for v in existing]))


def _copy_saved_model(model_dir: str, target: str) -> None:
  # saved_model.pb last: TF Serving treats its presence as "version complete".
  io_utils.copy_dir(model_dir, target, deny_regex_patterns=[r'saved_model\.pb'])
  io_utils.copy_file(os.path.join(model_dir, 'saved_model.pb'),
                     os.path.join(target, 'saved_model.pb'))


def publish(model_dir: str, base_directory: str, version: str) -> str:
  """Copies `model_dir` to `<base_directory>/<version>` all at once; returns that path."""
  if not version.isdigit():
    raise ValueError(f'Model version must be a number, got {version!r}.')
  final = os.path.join(base_directory, version)
  remote = '://' in base_directory
  staging = final if remote else os.path.join(
      base_directory, f'{STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}')
  try:
    if fileio.exists(final):
      raise FileExistsError(f'{final} already exists')
    fileio.makedirs(base_directory)
    _copy_saved_model(model_dir, staging)
    if not remote:
      fileio.rename(staging, final)
  except Exception as e:  # OSError, or tf.errors.* (e.g. ResourceExhaustedError) from fileio
    try:
      if fileio.exists(staging) and not fileio.exists(os.path.join(final, 'saved_model.pb')):
        fileio.rmtree(staging)
    except Exception:  # pylint: disable=broad-except
      logging.exception('Could not remove the partly written %s', staging)
    raise PushError(f'Could not push the model to {final}: {e}. Versions already in '
                    f'{base_directory} were not changed.') from e
  return final


class AtomicPushExecutor(pusher_executor.Executor):
  """The stock filesystem Pusher, with `publish` (stage, then rename) for the copy."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    self._log_startup(input_dict, output_dict, exec_properties)
    model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(model_push)
      return
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(
        exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
    if destination.WhichOneof('destination') != 'filesystem':
      raise NotImplementedError('AtomicPushExecutor pushes to a filesystem destination only.')
    base_directory = destination.filesystem.base_directory
    model_dir = self.GetModelPath(input_dict)
    io_utils.copy_dir(model_dir, model_push.uri)  # the artifact's own copy, before going live
    version = next_version(base_directory)
    serving_path = publish(model_dir, base_directory, version)
    logging.info('Model version %s published to %s.', version, serving_path)
    self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)


class AtomicPusher(tfx.components.Pusher):
  """tfx.components.Pusher that publishes each version atomically."""
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AtomicPushExecutor)
