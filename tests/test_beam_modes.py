"""Beam arguments per run: the CLI flags, and multi-processing DirectRunner == in-memory."""

import glob
import os

import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.orchestration.pipeline import RunOptions

from components.example_gen import ingest_pipeline, unlabeled_images
from pipeline import beam
from pipeline import definition as pipeline_lib
from tools import cli
from pipeline.configs import ConfigError, load_config
from tests.conftest import encode_image, random_pixels

def _beam_args(*flags, configured=('--direct_num_workers=1',)):
  config = load_config(overrides={'beam_pipeline_args': list(configured)})
  args = cli.build_parser().parse_args(['run', *flags])
  return cli._apply_beam_flags(config, args).beam_pipeline_args  # pylint: disable=protected-access


def test_cli_beam_preset_replaces_and_beam_arg_adds():
  assert _beam_args() == ['--direct_num_workers=1']  # the config file's arguments
  assert _beam_args('--beam-preset', 'multi_processing', '--beam-option', 'num_workers=2') == (
      beam.multi_processing(num_workers=2))
  args = _beam_args('--beam-preset', 'dataflow', '--beam-option', 'project=p1',
                    '--beam-option', 'region=us-central1',
                    '--beam-option', 'temp_location=gs://b/tmp', '--beam-arg=--experiments=x')
  assert args[0] == '--runner=DataflowRunner' and args[-1] == '--experiments=x'
  assert _beam_args('--beam-arg=--experiments=x') == ['--direct_num_workers=1',
                                                      '--experiments=x']


@pytest.mark.parametrize('flags, message', [
    (('--beam-preset', 'direct'), 'Unknown Beam preset'),
    (('--beam-preset', 'multi_processing'), 'needs num_workers'),
    (('--beam-preset', 'multi_processing', '--beam-option', 'workers=2'), 'does not take workers'),
    (('--beam-preset', 'in_memory', '--beam-option', 'oops'), 'name=value'),
    (('--beam-option', 'num_workers=2'), 'needs --beam-preset'),
])
def test_cli_beam_flags_fail_clearly(flags, message):
  with pytest.raises(ConfigError, match=message):
    _beam_args(*flags)


def _transformed_records(data, output, beam_args):
  """Runs ExampleGen..Transform of the real pipeline definition; sorted (label, pixels)."""
  config = load_config(overrides={'data.path': data, 'output': output, 'model.image_size': 75,
                                  'data.num_shards': 2, 'beam_pipeline_args': beam_args})
  metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(
      os.path.join(output, 'metadata.db'))
  # A TFX partial run: ExampleGen and everything Transform needs, nothing after it.
  tfx.orchestration.LocalDagRunner().run(
      pipeline_lib.create_pipeline(config, metadata_connection_config=metadata),
      run_options=RunOptions(to_nodes=['Transform']))
  records = {}
  for split in ('train', 'eval'):
    files = glob.glob(os.path.join(output, 'pipeline_root', 'Transform', 'transformed_examples',
                                   '*', f'Split-{split}', '*.gz'))
    assert files, f'no transformed {split} examples under {output}'
    # Compared parsed: protobuf map order in the serialized bytes may differ by process.
    examples = (tf.train.Example.FromString(r.numpy())
                for r in tf.data.TFRecordDataset(files, 'GZIP'))
    records[split] = sorted((e.features.feature['label'].int64_list.value[0],
                             e.features.feature['image'].bytes_list.value[0]) for e in examples)
  return records


@pytest.mark.slow
def test_multi_processing_transform_equals_in_memory(tmp_path):
  data = tmp_path / 'images'
  for label, name in enumerate(('cats', 'dogs')):
    (data / name).mkdir(parents=True)
    for i in range(12):
      pixels = random_pixels((40 + i, 50, 3), seed=100 * label + i)
      (data / name / f'{i}.png').write_bytes(encode_image(pixels))
  in_memory = _transformed_records(str(data), str(tmp_path / 'in_memory'), beam.in_memory())
  multi = _transformed_records(str(data), str(tmp_path / 'multi'),
                               beam.multi_processing(num_workers=2))
  assert {s: len(r) for s, r in in_memory.items()} == {s: len(r) for s, r in multi.items()}
  assert sum(len(r) for r in in_memory.values()) == 24
  assert in_memory == multi


def test_multi_processing_example_gen_writes_the_same_files(class_folder, tmp_path):
  """Two worker processes (FnApiRunner, as the local presets select) write byte-identical
  shards to one in-process run: each shard is one unit of work in a fixed order."""
  records = {}
  for mode, workers in (('in_memory', 1), ('multi_processing', 2)):
    out = str(tmp_path / mode)
    ingest_pipeline.ingest(str(class_folder), out, num_shards=4, beam_args=[
        '--runner=FnApiRunner', f'--direct_running_mode={mode}',
        f'--direct_num_workers={workers}'])
    records[mode] = {
        os.path.relpath(path, out): [r.numpy() for r in tf.data.TFRecordDataset(path, 'GZIP')]
        for path in sorted(glob.glob(os.path.join(out, 'Split-*', '*.gz')))}
  assert len(records['in_memory']) == 8
  assert sum(map(len, records['in_memory'].values())) == 21
  assert records['multi_processing'] == records['in_memory']


def test_multi_processing_unlabeled_example_gen_writes_the_same_files(class_folder, tmp_path):
  """The unlabeled ExampleGen (batch inference) too: shards and skipped.jsonl are
  byte-identical whether one process or two worker processes write them."""
  (class_folder / 'dogs' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
  written = {}
  for mode, beam_args in (('in_memory', beam.in_memory()),
                          ('multi_processing', beam.multi_processing(num_workers=2))):
    out = str(tmp_path / mode)
    counts = unlabeled_images.write_unlabeled_examples(
        str(class_folder), out, 10**6, num_shards=4, beam_args=beam_args)
    files = sorted(glob.glob(os.path.join(out, 'Split-unlabeled', '*.gz')))
    written[mode] = (counts, {
        os.path.basename(path): [r.numpy() for r in tf.data.TFRecordDataset(path, 'GZIP')]
        for path in files}, (tmp_path / mode / unlabeled_images.SKIPPED_FILE).read_bytes())
  (counts, shards, skipped) = written['in_memory']
  assert counts == (21, 1) and len(shards) == 4 and all(shards.values())
  assert sum(map(len, shards.values())) == 21 and b'broken.png' in skipped
  assert written['multi_processing'] == written['in_memory']
