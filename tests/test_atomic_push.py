"""Pushes that cannot collide, that clean up only after themselves, and that reach the disk.

Each test runs on a local folder and on an object store (`ram://`, TensorFlow's
in-memory filesystem, which like gs:// and s3:// has no folder rename). Another
object store is one more entry in SERVING_BASES.
"""

import itertools
import os
import time

import pytest
from tfx.dsl.io import fileio

from components.pusher import atomic_pusher

MODEL_FILES = ('saved_model.pb', 'fingerprint.pb', 'variables/variables.index',
               'variables/variables.data-00000-of-00001')
_RAM_IDS = itertools.count()
SERVING_BASES = {
    'local': lambda tmp_path: str(tmp_path / 'serving'),
    'ram': lambda tmp_path: f'ram://push-{os.getpid()}-{next(_RAM_IDS)}/serving',
}


@pytest.fixture(params=sorted(SERVING_BASES))
def serving_base(request, tmp_path) -> str:
  return SERVING_BASES[request.param](tmp_path)


def _fake_saved_model(folder, seed=0) -> str:
  for i, name in enumerate(MODEL_FILES):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes([seed, i]) * 1000)
  return str(folder)


def _files(folder: str):
  return sorted(os.path.relpath(os.path.join(root, name), folder)
                for root, _, names in fileio.walk(folder) for name in names)


def _read(path: str) -> bytes:
  with fileio.open(path, 'rb') as f:
    return f.read()


def _listing(base: str):
  return sorted(name.rstrip('/') for name in fileio.listdir(base))


def _in_progress_push(base: str, version: str) -> str:
  """Another run's push, half copied: a version folder without saved_model.pb."""
  path = os.path.join(base, version, 'variables', 'variables.index')
  fileio.makedirs(os.path.dirname(path))
  with fileio.open(path, 'wb') as f:
    f.write(b'another run')
  return path


def test_two_pushes_in_the_same_second_get_their_own_versions(serving_base, tmp_path):
  model = _fake_saved_model(tmp_path / 'model')
  now = time.time()
  # Both runs list the folder before either writes, as concurrent runs would.
  versions = [atomic_pusher.next_version(serving_base, now=now) for _ in range(2)]
  assert versions[0] != versions[1]
  for version in versions:
    atomic_pusher.publish(model, serving_base, version)
  assert _listing(serving_base) == sorted(versions)
  for version in versions:
    assert _files(os.path.join(serving_base, version)) == sorted(MODEL_FILES)


def test_a_taken_version_is_refused_and_left_alone(serving_base, tmp_path):
  other = _in_progress_push(serving_base, '20260101000000' + '00042')
  with pytest.raises(atomic_pusher.VersionTaken, match='already exists'):
    atomic_pusher.publish(_fake_saved_model(tmp_path / 'model'), serving_base,
                          '20260101000000' + '00042')
  assert _read(other) == b'another run'


def test_a_taken_version_is_drawn_again(serving_base, tmp_path, monkeypatch):
  taken = '20260101000000' + '00042'
  other = _in_progress_push(serving_base, taken)
  draws = iter([taken, '20260101000001' + '00007'])
  monkeypatch.setattr(atomic_pusher, 'next_version', lambda base: next(draws))
  path = atomic_pusher.publish_new_version(_fake_saved_model(tmp_path / 'model'), serving_base)
  assert path == os.path.join(serving_base, '20260101000001' + '00007')
  assert _read(other) == b'another run'


def test_failed_push_removes_only_what_it_wrote(serving_base, tmp_path, monkeypatch):
  other = _in_progress_push(serving_base, '20260101000000' + '00042')
  copy, copied = fileio.copy, []

  def copy_until_the_disk_fills(src, dst, overwrite=False):
    if len(copied) == 2:
      raise OSError(28, 'No space left on device')
    copied.append(dst)
    copy(src, dst, overwrite=overwrite)

  monkeypatch.setattr(fileio, 'copy', copy_until_the_disk_fills)
  with pytest.raises(atomic_pusher.PushError, match='No space left on device'):
    atomic_pusher.publish(_fake_saved_model(tmp_path / 'model'), serving_base,
                          '20260101000001' + '00007')
  assert len(copied) == 2 and not any(fileio.exists(path) for path in copied)
  assert _listing(serving_base) == ['20260101000000' + '00042']
  assert _read(other) == b'another run'


def test_stale_leftovers_are_removed_fresh_ones_kept(serving_base, tmp_path):
  now = time.time()
  old = atomic_pusher.next_version(str(tmp_path / 'none'), now=now - 2 * 24 * 3600)
  fresh = atomic_pusher.next_version(str(tmp_path / 'none'), now=now - 60)
  complete_old = atomic_pusher.next_version(str(tmp_path / 'none'), now=now - 3 * 24 * 3600)
  atomic_pusher.publish(_fake_saved_model(tmp_path / 'model'), serving_base, complete_old)
  for version in (old, fresh):
    _in_progress_push(serving_base, version)
    _in_progress_push(serving_base, f'{atomic_pusher.STAGING_PREFIX}{version}-abcd1234')
  _in_progress_push(serving_base, f'{atomic_pusher.STAGING_PREFIX}{int(now) - 90000}-0123abcd')
  removed = atomic_pusher.remove_stale_leftovers(serving_base, now=now)
  assert sorted(os.path.basename(p) for p in removed) == sorted([
      old, f'{atomic_pusher.STAGING_PREFIX}{old}-abcd1234',
      f'{atomic_pusher.STAGING_PREFIX}{int(now) - 90000}-0123abcd'])  # older naming too
  assert _listing(serving_base) == sorted(
      [complete_old, fresh, f'{atomic_pusher.STAGING_PREFIX}{fresh}-abcd1234'])
  assert _files(os.path.join(serving_base, complete_old)) == sorted(MODEL_FILES)


def test_local_push_reaches_the_disk_before_the_rename(tmp_path, monkeypatch):
  base = str(tmp_path / 'serving')
  events, rename = [], os.rename
  monkeypatch.setattr(atomic_pusher, '_fsync', lambda path: events.append(('fsync', path)))
  monkeypatch.setattr(atomic_pusher.os, 'rename', lambda src, dst: (
      events.append(('rename', src)), rename(src, dst)))
  final = atomic_pusher.publish(_fake_saved_model(tmp_path / 'model'), base, '20260101000000' + '00001')
  (rename_at,) = [i for i, (kind, _) in enumerate(events) if kind == 'rename']
  staging = events[rename_at][1]
  synced_before = {path for kind, path in events[:rename_at] if kind == 'fsync'}
  expected = {os.path.join(staging, name) for name in MODEL_FILES}
  expected |= {staging, os.path.join(staging, 'variables')}
  assert expected <= synced_before
  assert events[rename_at + 1:] == [('fsync', base)]
  assert _files(final) == sorted(MODEL_FILES)


def test_private_pusher_api_it_relies_on_is_still_there():
  """AtomicPushExecutor calls TFX's private `_MarkPushed` / `_MarkNotPushed` (and
  `_log_startup`): pinned here, so that a TFX upgrade that drops or renames them fails
  this test instead of a run. The properties are the ones the stock Pusher writes."""
  from tfx.components.pusher import executor as stock  # pylint: disable=g-import-not-at-top
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  executor = atomic_pusher.AtomicPushExecutor()
  for name in ('_MarkPushed', '_MarkNotPushed', '_log_startup', 'CheckBlessing',
               'GetModelPath'):
    assert callable(getattr(executor, name, None)), name
  pushed = standard_artifacts.PushedModel()
  executor._MarkPushed(pushed, pushed_destination='/srv/m/7', pushed_version='7')  # pylint: disable=protected-access
  assert pushed.get_int_custom_property(stock._PUSHED_KEY) == 1  # pylint: disable=protected-access
  assert pushed.get_string_custom_property('pushed_destination') == '/srv/m/7'
  assert pushed.get_string_custom_property('pushed_version') == '7'
  not_pushed = standard_artifacts.PushedModel()
  executor._MarkNotPushed(not_pushed)  # pylint: disable=protected-access
  assert not_pushed.get_int_custom_property('pushed') == 0


def test_only_the_newest_identical_version_counts_as_unchanged(serving_base, tmp_path):
  model = _fake_saved_model(tmp_path / 'a')
  assert atomic_pusher.newest_identical_version(model, serving_base) is None  # nothing yet
  first = atomic_pusher.publish_new_version(model, serving_base)
  assert atomic_pusher.newest_identical_version(model, serving_base) == first
  same_size = _fake_saved_model(tmp_path / 'b', seed=1)  # one byte differs in each file
  assert atomic_pusher.newest_identical_version(same_size, serving_base) is None
  extra = _fake_saved_model(tmp_path / 'c')
  (tmp_path / 'c' / 'assets.extra').mkdir()
  (tmp_path / 'c' / 'assets.extra' / 'tflite.json').write_text('{}')
  assert atomic_pusher.newest_identical_version(extra, serving_base) is None
  atomic_pusher.publish_new_version(same_size, serving_base)
  assert atomic_pusher.newest_identical_version(model, serving_base) is None  # not the newest


def _push_artifacts(model_uri: str, tmp_path, name: str):
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  model = standard_artifacts.Model()
  model.uri = model_uri
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / 'blessing')
  blessing.set_int_custom_property('blessed', 1)
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / name)
  return {'model': [model], 'model_blessing': [blessing]}, {'pushed_model': [pushed]}


def test_a_rerun_with_the_same_model_pushes_nothing(serving_base, tmp_path):
  import json  # pylint: disable=g-import-not-at-top
  model_uri = str(tmp_path / 'model')
  _fake_saved_model(tmp_path / 'model' / 'Format-Serving')
  properties = {'push_destination': json.dumps(
      {'filesystem': {'base_directory': serving_base}})}
  executor = atomic_pusher.AtomicPushExecutor()
  for name in ('push1', 'push2'):
    inputs, outputs = _push_artifacts(model_uri, tmp_path, name)
    executor.Do(inputs, outputs, properties)
    [pushed] = outputs['pushed_model']
    if name == 'push1':
      first = pushed.get_string_custom_property('pushed_destination')
      listing = _listing(serving_base)
      assert pushed.get_int_custom_property('pushed') == 1 and len(listing) == 1
  assert pushed.get_int_custom_property('pushed') == 0
  assert pushed.get_string_custom_property(atomic_pusher.UNCHANGED_AS) == first
  assert _listing(serving_base) == listing
  assert not fileio.exists(pushed.uri) or not _files(pushed.uri)
