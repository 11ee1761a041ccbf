"""ExampleGen over a real object store: moto's S3 server on loopback, read through Beam.

The same class folder (with planted bad files) is uploaded to a bucket and kept on local
disk; the pipeline's ExampleGen reads `s3://...` and must write the same examples, the
same quarantine and counts; changing one object must re-run it (no stale cache).
The pipeline root stays local: TensorFlow 2.16's own filesystem has no s3:// without
tensorflow-io, and only the data edge reads the bucket.
"""

import glob
import json
import os

import boto3
import pytest
import tensorflow as tf
from tfx import v1 as tfx
from moto import server as moto_server
from tfx.orchestration.pipeline import RunOptions

from components.example_gen import ingest_pipeline, unlabeled_images
from pipeline import definition as pipeline_lib
from tools import run_summary as report
from pipeline.configs import load_config
from tests.conftest import encode_image, random_pixels

BUCKET = 'images'
PREFIX = 'pets'


@pytest.fixture(scope='module')
def s3(tmp_path_factory):
  """A moto S3 server on 127.0.0.1 (a random port), reached through the AWS environment
  variables that boto3 (Beam's S3 filesystem) reads, in this and every worker process."""
  server = moto_server.ThreadedMotoServer(ip_address='127.0.0.1', port=0)
  server.start()
  host, port = server.get_host_and_port()
  env = {'AWS_ENDPOINT_URL': f'http://{host}:{port}', 'AWS_ACCESS_KEY_ID': 'test',
         'AWS_SECRET_ACCESS_KEY': 'test', 'AWS_DEFAULT_REGION': 'us-east-1'}
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  client = boto3.client('s3')
  client.create_bucket(Bucket=BUCKET)
  try:
    yield client
  finally:
    for key, value in saved.items():
      if value is None:
        os.environ.pop(key, None)
      else:
        os.environ[key] = value
    server.stop()


@pytest.fixture(scope='module')
def local_folder(tmp_path_factory):
  """Two classes (one nested subfolder), a hidden folder, a text file, a truncated image."""
  root = tmp_path_factory.mktemp('store') / 'pets'
  files = {f'cats/{i}.png': encode_image(random_pixels((16, 20, 3), i)) for i in range(8)}
  files.update({f'dogs/sub/{i}.jpg': encode_image(random_pixels((18, 14, 3), 50 + i), 'JPEG')
                for i in range(7)})
  files.update({'dogs/notes.txt': b'not an image', 'cats/.cache/x.png': files['cats/0.png'],
                'cats/broken.png': files['cats/1.png'][:40], 'stray.png': files['cats/2.png']})
  for relpath, data in files.items():
    os.makedirs(root / os.path.dirname(relpath), exist_ok=True)
    (root / relpath).write_bytes(data)
  return root, files


def _upload(client, files):
  for relpath, data in files.items():
    client.put_object(Bucket=BUCKET, Key=f'{PREFIX}/{relpath}', Body=data)


def _records(folder):
  """Split -> shard file name -> records, as written."""
  out = {}
  for path in sorted(glob.glob(os.path.join(folder, 'Split-*', '*.gz'))):
    split, name = path.split(os.sep)[-2:]
    out.setdefault(split, {})[name] = [r.numpy() for r in tf.data.TFRecordDataset(path, 'GZIP')]
  return out


def _run_example_gen(data: str, output: str, node: str = 'ImageFolderExampleGen', **overrides):
  """A TFX partial run of the real pipeline definition: one ExampleGen only."""
  config = load_config(overrides={'data.path': data, 'output': output, 'data.num_shards': 2,
                                  **overrides})
  metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
  tfx.orchestration.LocalDagRunner().run(
      pipeline_lib.create_pipeline(config, metadata_connection_config=metadata),
      run_options=RunOptions(to_nodes=[node]))
  uri = max(glob.glob(os.path.join(config.pipeline_root, node, 'examples', '*')),
            key=lambda p: int(os.path.basename(p)))
  state = report.latest_executions(config)[node]
  return uri, state


def test_s3_folder_gives_the_examples_of_the_local_folder(s3, local_folder, tmp_path):
  root, files = local_folder
  _upload(s3, files)
  remote_uri, state = _run_example_gen(f's3://{BUCKET}/{PREFIX}', str(tmp_path / 'remote'))
  assert state == 'COMPLETE'
  local = str(tmp_path / 'local')
  local_summary = ingest_pipeline.ingest(str(root), local, num_shards=2)
  remote_summary = ingest_pipeline.load_summary(remote_uri)
  assert _records(remote_uri) == _records(local)  # the same bytes, in the same order
  assert remote_summary.to_json() == local_summary.to_json()
  assert {r['path']: r['reason'] for r in remote_summary.skipped_files} == {
      'cats/.cache': 'hidden folder (not read)', 'cats/broken.png': 'corrupt image data',
      'dogs/notes.txt': 'not an image file extension', 'stray.png': 'not inside a class folder'}
  assert remote_summary.class_names == ['cats', 'dogs']
  with open(os.path.join(remote_uri, ingest_pipeline.SUMMARY_FILE)) as f:
    assert json.load(f)['found'] == {'cats': 10, 'dogs': 8, '(root)': 1}


def test_a_changed_object_reruns_example_gen(s3, local_folder, tmp_path):
  _, files = local_folder
  _upload(s3, files)
  output = str(tmp_path / 'run')
  first, state = _run_example_gen(f's3://{BUCKET}/{PREFIX}', output)
  assert state == 'COMPLETE'
  same, state = _run_example_gen(f's3://{BUCKET}/{PREFIX}', output)
  assert (same, state) == (first, 'CACHED')
  s3.put_object(Bucket=BUCKET, Key=f'{PREFIX}/cats/3.png',
                Body=encode_image(random_pixels((16, 20, 3), 999)))
  changed, state = _run_example_gen(f's3://{BUCKET}/{PREFIX}', output)
  assert state == 'COMPLETE' and changed != first
  assert _records(changed) != _records(first)


def _unlabeled(folder, root):
  """Shard file name -> [(path below `root`, image bytes)] in written order, and
  {path below `root`: reason} of the skipped files."""
  shards = {os.path.basename(path): [
      (e.features.feature['filename'].bytes_list.value[0].decode()[len(root) + 1:],
       e.features.feature['image'].bytes_list.value[0])
      for e in map(tf.train.Example.FromString,
                   (r.numpy() for r in tf.data.TFRecordDataset(path, 'GZIP')))]
      for path in sorted(glob.glob(os.path.join(folder, 'Split-unlabeled', '*.gz')))}
  skipped = {path[len(root) + 1:]: reason
             for path, reason in unlabeled_images.read_skipped(folder)}
  return shards, skipped


def test_unlabeled_example_gen_reads_an_s3_folder_as_the_local_one(s3, local_folder, tmp_path):
  """Batch inference's ExampleGen on s3://: the same images, shards and skips as on disk."""
  root, files = local_folder
  _upload(s3, files)
  remote = f's3://{BUCKET}/{PREFIX}'
  uri, state = _run_example_gen(str(root), str(tmp_path / 'remote'), 'UnlabeledImageExampleGen',
                                **{'inference.data': remote})
  assert state == 'COMPLETE'
  local = str(tmp_path / 'local')
  assert unlabeled_images.write_unlabeled_examples(str(root), local, 10**6, num_shards=2) == (
      16, 3)
  shards, skipped = _unlabeled(uri, remote)
  assert (shards, skipped) == _unlabeled(local, str(root))
  assert sum(map(len, shards.values())) == 16 and len(shards) == 2
  assert skipped == {'cats/.cache': 'hidden folder (not read)',
                     'cats/broken.png': 'corrupt image data',
                     'dogs/notes.txt': 'not an image file extension'}


def _counting_listings(monkeypatch, root):
  """The listing calls (FileSystems.match patterns) below `root`, as they happen."""
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=g-import-not-at-top
  calls, match = [], FileSystems.match

  def counting(patterns, limits=None):
    calls.extend(p for p in patterns if p.startswith(root))
    return match(patterns, limits)

  monkeypatch.setattr(FileSystems, 'match', counting)
  return calls


def test_a_remote_folder_is_listed_once_per_run(s3, local_folder, tmp_path, monkeypatch):
  """The driver's fingerprint, the layout probes (TFRecords at the root, under train/ and
  validation/) and the listing share one listing of the bucket."""
  _, files = local_folder
  _upload(s3, files)
  root = f's3://{BUCKET}/{PREFIX}'
  calls = _counting_listings(monkeypatch, root)
  uri, state = _run_example_gen(root, str(tmp_path / 'run'))
  assert state == 'COMPLETE' and calls == [f'{root}/**']
  assert ingest_pipeline.load_summary(uri).found == {'cats': 10, 'dogs': 8, '(root)': 1}
  calls.clear()  # without the driver's fingerprint (a tool, or another process): one too
  ingest_pipeline.list_data(root, ingest_pipeline.IngestOptions())
  assert calls == [f'{root}/**']


def test_a_remote_unlabeled_folder_is_listed_once_per_run(s3, local_folder, tmp_path,
                                                          monkeypatch):
  """Batch inference's ExampleGen lists with the listing its driver fingerprinted."""
  root, files = local_folder
  _upload(s3, files)
  remote = f's3://{BUCKET}/{PREFIX}'
  calls = _counting_listings(monkeypatch, remote)
  uri, state = _run_example_gen(str(root), str(tmp_path / 'run'), 'UnlabeledImageExampleGen',
                                **{'inference.data': remote})
  assert state == 'COMPLETE' and calls == [f'{remote}/**']
  assert sum(map(len, _unlabeled(uri, remote)[0].values())) == 16


def test_tfrecords_in_a_bucket_are_found_from_the_one_listing(s3):
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=g-import-not-at-top
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
  from components.example_gen import image_listing  # pylint: disable=g-import-not-at-top
  FileSystems.set_options(PipelineOptions())  # as the driver does: settings from the env
  for key in ('flat/a.tfrecord', 'flat/b.tfrecord.gz', 'flat/sub/c.tfrecord',
              'split/train/a.tfrecord-00000', 'split/validation/b.tfrecords',
              'split/validation/notes.txt', 'onlytrain/train/a.tfrecord',
              'valsplit/train/a.tfrecord', 'valsplit/val/b.tfrecord'):
    s3.put_object(Bucket=BUCKET, Key=key, Body=b'x')
  base = f's3://{BUCKET}'
  assert image_listing.list_folder(f'{base}/flat').tfrecord_files == {
      '': [f'{base}/flat/a.tfrecord', f'{base}/flat/b.tfrecord.gz']}
  assert image_listing.list_folder(f'{base}/split').tfrecord_files == {
      'train': [f'{base}/split/train/a.tfrecord-00000'],
      'eval': [f'{base}/split/validation/b.tfrecords']}
  assert not image_listing.list_folder(f'{base}/onlytrain').tfrecord_files  # a class folder
  listing = image_listing.list_folder(f'{base}/valsplit')  # the image folders' split names
  assert listing.tfrecord_files == {'train': [f'{base}/valsplit/train/a.tfrecord'],
                                    'eval': [f'{base}/valsplit/val/b.tfrecord']}
  assert listing.file_bytes == {f'{base}/valsplit/train/a.tfrecord': 1,
                                f'{base}/valsplit/val/b.tfrecord': 1}


def test_tfrecords_in_a_bucket_are_read_in_byte_ranges_after_one_listing(s3, tmp_path,
                                                                       monkeypatch):
  """Large TFRecord files are split into byte ranges from the sizes the one listing gave,
  with no size lookup per file."""
  records = tmp_path / 'part.tfrecord'
  with tf.io.TFRecordWriter(str(records)) as writer:
    for i in range(24):
      writer.write(tf.train.Example(features=tf.train.Features(feature={
          'image': tf.train.Feature(bytes_list=tf.train.BytesList(
              value=[encode_image(random_pixels((8, 8, 3), i))])),
          'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2]))
      })).SerializeToString())
  for name in ('a.tfrecord', 'b.tfrecord'):
    s3.put_object(Bucket=BUCKET, Key=f'ranged/{name}', Body=records.read_bytes())
  root = f's3://{BUCKET}/ranged'
  size = records.stat().st_size
  monkeypatch.setattr(ingest_pipeline, 'TFRECORD_RANGE_BYTES', size // 3)
  calls = _counting_listings(monkeypatch, root)
  summary = ingest_pipeline.ingest(root, str(tmp_path / 'out'), class_names=('cats', 'dogs'))
  assert calls == [f'{root}/**']
  assert sum(summary.found.values()) == 48 and summary.total_skipped == 0
  shards = os.listdir(tmp_path / 'out' / 'Split-train')
  assert len(shards) == 2 * -(-size // (size // 3))  # a shard per byte range
