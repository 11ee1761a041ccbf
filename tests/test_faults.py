"""Faults around the output folder: atomic pushes, failed pushes, the output lock."""

import errno
import os
import signal
import subprocess
import sys
import time

import pytest
from tfx.dsl.io import fileio

from components.pusher import atomic_pusher
from pipeline import local_runner
from pipeline.configs import ConfigError, load_config
from pipeline.output_lock import OutputLockedError, output_lock
from tests.conftest import tree_digest

MODEL_FILES = ('saved_model.pb', 'fingerprint.pb', 'variables/variables.index',
               'variables/variables.data-00000-of-00001', 'assets/labels.txt')


def _fake_saved_model(folder, seed=0):
  for i, name in enumerate(MODEL_FILES):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes([seed, i]) * 5000)
  return str(folder)


def _files(folder):
  return {os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs}


def _incomplete_versions(base):
  """What a model server polling `base` would see: numeric folders missing files."""
  if not os.path.isdir(base):
    return []
  return [v for v in os.listdir(base)
          if v.isdigit() and _files(os.path.join(base, v)) != set(MODEL_FILES)]


def _observe_every_copy(monkeypatch, base):
  """Looks at `base` after every file copied, as a polling reader could; returns sightings."""
  seen, copy = [], fileio.copy

  def copy_then_look(src, dst, overwrite=False):
    copy(src, dst, overwrite=overwrite)
    seen.extend(_incomplete_versions(base))

  monkeypatch.setattr(fileio, 'copy', copy_then_look)
  return seen


def test_reader_never_sees_a_half_written_version(tmp_path, monkeypatch):
  model = _fake_saved_model(tmp_path / 'model')
  base = str(tmp_path / 'serving')
  seen = _observe_every_copy(monkeypatch, base)
  first = atomic_pusher.publish(model, base, atomic_pusher.next_version(base))
  second = atomic_pusher.publish(model, base, atomic_pusher.next_version(base))
  assert seen == []
  assert int(os.path.basename(second)) > int(os.path.basename(first))
  assert sorted(os.listdir(base)) == sorted([os.path.basename(first), os.path.basename(second)])
  # The same reader does catch the stock in-place copy: the check above can fail.
  atomic_pusher.io_utils.copy_dir(model, os.path.join(base, '1'))
  assert seen and set(seen) == {'1'}


def test_object_store_push_copies_saved_model_pb_last(tmp_path, monkeypatch):
  """No folder rename on gs:// or s3:// (here TensorFlow's ram://): saved_model.pb last."""
  model = _fake_saved_model(tmp_path / 'model')
  base = f'ram://{tmp_path.name}/serving'
  order = []
  copy = fileio.copy
  monkeypatch.setattr(fileio, 'copy', lambda src, dst, overwrite=False: (
      order.append(os.path.basename(dst)), copy(src, dst, overwrite=overwrite)))
  path = atomic_pusher.publish(model, base, '7')
  assert path == f'{base}/7' and fileio.listdir(base) == ['7']
  assert order[-1] == 'saved_model.pb' and len(order) == len(MODEL_FILES)
  assert fileio.exists(f'{base}/7/variables/variables.index')


@pytest.mark.parametrize('error, message', [
    (OSError(errno.ENOSPC, 'No space left on device'), 'No space left on device'),
    (PermissionError(errno.EACCES, 'Permission denied'), 'Permission denied'),
])
def test_failed_push_keeps_earlier_versions_intact(tmp_path, monkeypatch, error, message):
  base = str(tmp_path / 'serving')
  old = atomic_pusher.publish(_fake_saved_model(tmp_path / 'old', seed=1), base, '100')
  before = tree_digest(old)
  copied = []

  def copy_until_the_disk_fills(src, dst, overwrite=False):
    if len(copied) == 2:
      raise error
    copied.append(dst)
    open(dst, 'wb').write(open(src, 'rb').read())

  monkeypatch.setattr(fileio, 'copy', copy_until_the_disk_fills)
  with pytest.raises(atomic_pusher.PushError, match=message) as failure:
    atomic_pusher.publish(_fake_saved_model(tmp_path / 'new', seed=2), base, '200')
  assert 'were not changed' in str(failure.value)
  assert os.listdir(base) == ['100']  # no half version, no staging folder left behind
  assert tree_digest(old) == before


def test_next_version_is_newer_than_every_existing_one(tmp_path):
  base = tmp_path / 'serving'
  assert int(atomic_pusher.next_version(str(base))) >= int(time.time()) - 1
  (base / '9000000000000000000').mkdir(parents=True)
  (base / '.staging-x').mkdir()
  assert 0 < int(atomic_pusher.next_version(str(base))) - 9000000000000000000 <= 100_000
  with pytest.raises(ValueError, match='must be a number'):
    atomic_pusher.publish(str(base), str(base), '../escape')


def test_pipeline_pushes_through_the_atomic_executor(class_folder, tmp_path):
  from pipeline import definition as pipeline_lib  # pylint: disable=g-import-not-at-top
  config = load_config(overrides={'data.path': str(class_folder), 'output': str(tmp_path)})
  (pusher,) = [c for c in pipeline_lib.create_pipeline(config).components if c.id == 'AtomicPusher']
  assert isinstance(pusher, atomic_pusher.AtomicPusher)
  assert pusher.executor_spec.executor_class is atomic_pusher.AtomicPushExecutor


_HOLD_LOCK = '''
import sys, time
from pipeline.output_lock import output_lock
with output_lock(sys.argv[1]):
  print('locked', flush=True)
  time.sleep(600)
'''


def test_second_run_into_the_same_output_is_refused(class_folder, tmp_path):
  output = str(tmp_path / 'run')
  holder = subprocess.Popen([sys.executable, '-c', _HOLD_LOCK, output], stdout=subprocess.PIPE,
                            text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  try:
    assert holder.stdout.readline().strip() == 'locked'
    config = load_config(overrides={'data.path': str(class_folder), 'output': output})
    with pytest.raises(OutputLockedError, match=f'process {holder.pid}'):
      local_runner.run(config)
    assert os.listdir(output) == ['.lock']  # refused before writing anything
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with output_lock(output):  # the OS released the killed holder's lock: nothing stale
    pass


def test_the_lock_nests_within_a_process_and_still_refuses_others(tmp_path):
  """The CLI takes the lock before its heavy imports; local_runner.run takes it again."""
  output = str(tmp_path / 'run')
  check = ('import sys\nfrom pipeline.output_lock import OutputLockedError, output_lock\n'
           'try:\n  with output_lock(sys.argv[1]): print("free")\n'
           'except OutputLockedError: print("refused")\n')

  def other_process_sees():
    return subprocess.run([sys.executable, '-c', check, output], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(__file__))).stdout.strip()
  with output_lock(output):
    with output_lock(output):
      assert other_process_sees() == 'refused'
    assert other_process_sees() == 'refused'  # the outer hold still stands
  assert other_process_sees() == 'free'


def test_cli_refuses_a_locked_output_in_one_line(class_folder, tmp_path, capsys):
  from tools import cli  # pylint: disable=g-import-not-at-top
  output = str(tmp_path / 'run')
  holder = subprocess.Popen([sys.executable, '-c', _HOLD_LOCK, output], stdout=subprocess.PIPE,
                            text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  try:
    assert holder.stdout.readline().strip() == 'locked'
    assert cli.main(['run', '--data', str(class_folder), '--output', output,
                     '--weights', 'none']) == 2
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert f'Another run (process {holder.pid}) is using {output}' in capsys.readouterr().err


def test_runs_with_different_outputs_share_nothing(class_folder, tmp_path):
  a, b = (load_config(overrides={'data.path': str(class_folder), 'output': str(tmp_path / n)})
          for n in ('a', 'b'))
  for path_a, path_b in ((a.pipeline_root, b.pipeline_root), (a.metadata_path, b.metadata_path),
                         (a.serving_model_dir, b.serving_model_dir)):
    assert os.path.commonpath([path_a, path_b]) == str(tmp_path)
  with output_lock(a.output), output_lock(b.output):
    pass


def test_unwritable_output_is_a_clear_error(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a folder')
  with pytest.raises(ConfigError, match='output: cannot write to'):
    with output_lock(str(blocker / 'run')):
      pass
