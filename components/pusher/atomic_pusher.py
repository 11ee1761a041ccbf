"""Pusher executor that publishes a model version atomically.

The stock Pusher copies files straight into `<base>/<version>/`, so a model server
polling the base directory can see a half-written version. This executor copies
into a hidden staging folder beside it, fsyncs it, and renames it into place:

    <base>/.staging-<version>-<random>/   (TF Serving ignores non-numeric names)
      -> fsync files and folders, rename (never over an existing version) ->
    <base>/<version>/

A rename within one local or mounted POSIX filesystem is atomic. Object stores
(gs://, s3://) have no folder rename (TensorFlow copies object by object, in name
order, so `saved_model.pb` would land before `variables/`); there the model is
copied straight into `<version>/`, never over an existing object, with
`saved_model.pb` last, and readers rely on TF Serving's rule that a version is
complete once `saved_model.pb` exists.

Versions are the UTC time to the second plus five random digits
(`YYYYMMDDhhmmssNNNNN`, an int64 for TF Serving), always above the newest existing
version: two pushes in the same second get different versions (and should two ever
draw the same one, the second finds it taken and draws again). A failed push
(disk full, permission denied) removes only what it wrote itself (its staging
folder, or on an object store the files it copied) and never touches other
versions. Leftovers of killed pushes (`.staging-*` folders, versions without
`saved_model.pb` on object stores) older than STALE_AFTER_SECONDS are removed by the
next push.

A blessed model whose files are byte-identical to the newest version (an unchanged
rerun: the Trainer was cached) is not pushed again: the PushedModel artifact says
`pushed` 0 and names that version in its `unchanged_as` property.

`AtomicPusher` is the stock Pusher component with this executor: same inputs,
outputs, blessing check and PushedModel artifact. With `custom_config={'serving_config':
{'model_name': ..., 'max_batch': ...}}` it also writes TF Serving's configuration for the
new version beside the model folder (`components.serving.serving_config`).
"""

import datetime
import errno
import json
import os
import random
import time
import uuid
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx import v1 as tfx
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components.serving import serving_config

STAGING_PREFIX = '.staging-'
UNCHANGED_AS = 'unchanged_as'  # PushedModel property: the identical version already there
SAVED_MODEL_PB = 'saved_model.pb'
# Older than any push in progress: a push copies one model (minutes at most).
STALE_AFTER_SECONDS = 24 * 3600
_TIME_FORMAT = '%Y%m%d%H%M%S'
_RANDOM_RANGE = 100_000
_CHUNK = 1 << 20


class PushError(RuntimeError):
  """The model could not be published; already pushed versions are untouched."""


class VersionTaken(PushError):
  """Another push already uses this version number."""


def _is_remote(path: str) -> bool:
  return '://' in path


def _existing_versions(base_directory: str) -> List[str]:
  if not fileio.exists(base_directory):
    return []
  return [name.rstrip('/') for name in fileio.listdir(base_directory)
          if name.rstrip('/').isdigit()]


def next_version(base_directory: str, now: Optional[float] = None) -> str:
  """`YYYYMMDDhhmmss` (UTC) + 5 random digits, above every existing version."""
  now = time.time() if now is None else now
  stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
  draw = random.SystemRandom().randrange(_RANDOM_RANGE)
  version = int(f'{stamp.strftime(_TIME_FORMAT)}{draw:05d}')
  newest = max((int(v) for v in _existing_versions(base_directory)), default=0)
  return str(max(version, newest + 1 + draw))


def version_time(version: str) -> Optional[float]:
  """When a version (this executor's format, or Unix seconds) was made; None if unknown."""
  try:
    if len(version) == 19:
      stamp = datetime.datetime.strptime(version[:14], _TIME_FORMAT)
      return stamp.replace(tzinfo=datetime.timezone.utc).timestamp()
    if len(version) == 10:
      return float(version)
  except ValueError:
    pass
  return None


def _model_files(model_dir: str) -> List[str]:
  """Paths relative to `model_dir`, `saved_model.pb` last (TF Serving: "version complete")."""
  files = []
  for root, _, names in fileio.walk(model_dir):
    files += [os.path.relpath(os.path.join(root, n), model_dir) for n in names]
  return sorted(files, key=lambda f: (f == SAVED_MODEL_PB, f))


def _copy_files(model_dir: str, target: str, written: List[str]) -> None:
  """Copies the model into `target`, never over an existing file; appends each written path."""
  for relative in _model_files(model_dir):
    destination = os.path.join(target, relative)
    fileio.makedirs(os.path.dirname(destination))
    fileio.copy(os.path.join(model_dir, relative), destination, overwrite=False)
    written.append(destination)


def _same_bytes(first: str, second: str) -> bool:
  if fileio.stat(first).length != fileio.stat(second).length:
    return False
  with fileio.open(first, 'rb') as a, fileio.open(second, 'rb') as b:
    while True:
      chunk = a.read(_CHUNK)
      if chunk != b.read(_CHUNK):
        return False
      if not chunk:
        return True


def newest_identical_version(model_dir: str, base_directory: str) -> Optional[str]:
  """The newest version folder if it holds exactly the files of `model_dir`, else None."""
  versions = _existing_versions(base_directory)
  if not versions:
    return None
  newest = os.path.join(base_directory, max(versions, key=int))
  files = _model_files(model_dir)
  if files != _model_files(newest):
    return None
  if all(_same_bytes(os.path.join(model_dir, f), os.path.join(newest, f)) for f in files):
    return newest
  return None


def _fsync(path: str) -> None:
  descriptor = os.open(path, os.O_RDONLY)
  try:
    os.fsync(descriptor)
  finally:
    os.close(descriptor)


def fsync_tree(folder: str) -> None:
  """Flushes every file and folder under a local `folder` (and itself) to disk."""
  for root, _, names in os.walk(folder, topdown=False):
    for name in names:
      _fsync(os.path.join(root, name))
    _fsync(root)


def _remove_quietly(paths: List[str], what: str) -> None:
  for path in paths:
    try:
      if fileio.isdir(path):
        fileio.rmtree(path)
      elif fileio.exists(path):
        fileio.remove(path)
    except Exception:  # pylint: disable=broad-except
      logging.exception('Could not remove %s %s', what, path)


def remove_stale_leftovers(base_directory: str, now: Optional[float] = None) -> List[str]:
  """Removes `.staging-*` folders, and versions without saved_model.pb, made more than
  STALE_AFTER_SECONDS ago (by the version in their name); returns what it removed."""
  if not fileio.exists(base_directory):
    return []
  now = time.time() if now is None else now
  stale = []
  for name in (n.rstrip('/') for n in fileio.listdir(base_directory)):
    path = os.path.join(base_directory, name)
    if name.startswith(STAGING_PREFIX):
      version = name[len(STAGING_PREFIX):].split('-')[0]
    elif name.isdigit() and not fileio.exists(os.path.join(path, SAVED_MODEL_PB)):
      version = name
    else:
      continue
    made = version_time(version) if version.isdigit() else None
    if made is not None and now - made > STALE_AFTER_SECONDS:
      stale.append(path)
  _remove_quietly(stale, 'stale push leftover')
  return stale


def _publish_local(model_dir: str, base_directory: str, final: str, version: str) -> None:
  staging = os.path.join(base_directory, f'{STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}')
  try:
    _copy_files(model_dir, staging, [])
    fsync_tree(staging)
    if fileio.exists(final):
      raise VersionTaken(f'{final} already exists')
    os.rename(staging, final)  # POSIX: fails onto a folder that holds files
  except BaseException:
    _remove_quietly([staging], 'the staging folder')
    raise
  _fsync(base_directory)  # the rename itself reaches the disk


def _publish_remote(model_dir: str, final: str) -> None:
  written: List[str] = []
  try:
    _copy_files(model_dir, final, written)
  except BaseException:
    _remove_quietly(written, 'partly pushed file')
    if fileio.exists(final) and not any(files for _, _, files in fileio.walk(final)):
      _remove_quietly([final], 'the emptied version folder')
    raise


def publish(model_dir: str, base_directory: str, version: str) -> str:
  """Copies `model_dir` to `<base_directory>/<version>` all at once; returns that path."""
  if not version.isdigit():
    raise ValueError(f'Model version must be a number, got {version!r}.')
  final = os.path.join(base_directory, version)
  try:
    if fileio.exists(final):
      raise VersionTaken(f'{final} already exists')
    fileio.makedirs(base_directory)
    if _is_remote(base_directory):
      _publish_remote(model_dir, final)
    else:
      _publish_local(model_dir, base_directory, final, version)
  except Exception as e:  # OSError, or tf.errors.* (e.g. ResourceExhaustedError) from fileio
    taken = isinstance(e, VersionTaken) or (
        isinstance(e, OSError) and e.errno in (errno.EEXIST, errno.ENOTEMPTY))
    raise (VersionTaken if taken else PushError)(f'Could not push the model to {final}: {e}. Versions already in '
                f'{base_directory} were not changed.') from e
  return final


def publish_new_version(model_dir: str, base_directory: str, attempts: int = 3) -> str:
  """Publishes under a fresh version, drawing again if another push took it first."""
  for attempt in range(attempts):
    try:
      return publish(model_dir, base_directory, next_version(base_directory))
    except VersionTaken:
      if attempt == attempts - 1:
        raise
  raise AssertionError('unreachable')


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
    unchanged = newest_identical_version(model_dir, base_directory)
    if unchanged:
      logging.info('Model unchanged: identical to %s, nothing pushed.', unchanged)
      self._MarkNotPushed(model_push)
      model_push.set_string_custom_property(UNCHANGED_AS, unchanged)
      return
    io_utils.copy_dir(model_dir, model_push.uri)  # the artifact's own copy, before going live
    for leftover in remove_stale_leftovers(base_directory):
      logging.warning('Removed %s, left by a push that did not finish.', leftover)
    stable = max((int(v) for v in _existing_versions(base_directory)), default=None)
    serving_path = publish_new_version(model_dir, base_directory)
    version = os.path.basename(serving_path)
    logging.info('Model version %s published to %s.', version, serving_path)
    config = json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
                        or 'null') or {}
    if 'serving_config' in config:
      folder = serving_config.write_serving_config(
          base_directory, version=int(version), stable_version=stable,
          **config['serving_config'])
      logging.info('TF Serving configuration for version %s written to %s.', version, folder)
    self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)


class AtomicPusher(tfx.components.Pusher):
  """tfx.components.Pusher that publishes each version atomically."""
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AtomicPushExecutor)
