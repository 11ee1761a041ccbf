"""The serving canary on a tiny exported model and real photo crops: a candidate that
serves is blessed and pushed with warmup requests that replay; one whose signatures
refuse the requests, or that cannot load within the time limit, is not pushed."""

import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from sklearn.datasets import load_sample_images
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.pusher.atomic_pusher import AtomicPushExecutor
from components.serving import serving_canary, serving_config, serving_requests
from components.serving.serving_canary import CanaryLimits
from pipeline.configs import ServingConfig
from tests.tiny_model import export_tiny_model

NUM_EXAMPLES = 4
FAST = dict(num_examples=NUM_EXAMPLES, timed_requests=3, max_batch=8)


def photo_examples(count: int):
  """Serialized raw tf.Examples of JPEG crops of scikit-learn's two sample photos."""
  photos = load_sample_images().images
  examples = []
  for i in range(count):
    photo = photos[i % 2]
    crop = photo[40 * i:40 * i + 120, 60 * i:60 * i + 160]
    out = io.BytesIO()
    Image.fromarray(crop).save(out, format='JPEG', quality=90)
    examples.append(tf.train.Example(features=tf.train.Features(feature={
        'image': tf.train.Feature(bytes_list=tf.train.BytesList(value=[out.getvalue()])),
        'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2])),
        'filename': tf.train.Feature(bytes_list=tf.train.BytesList(value=[f'{i}.jpg'.encode()])),
    })).SerializeToString())
  return examples


@pytest.fixture(scope='module')
def example_files(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('examples') / 'data_tfrecord-00000-of-00001.gz')
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for example in photo_examples(6):
      writer.write(example)
  return [path]


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
  return export_tiny_model(str(tmp_path_factory.mktemp('model')))


@pytest.fixture(scope='module')
def passed(model_dir, example_files, tmp_path_factory):
  output = str(tmp_path_factory.mktemp('blessing'))
  return serving_canary.run_canary(model_dir, example_files, output, 'image_classifier',
                                   CanaryLimits(**FAST)), output


def _infra_blessing(output: str, result) -> standard_artifacts.InfraBlessing:
  artifact = standard_artifacts.InfraBlessing()
  artifact.uri = output
  serving_canary._mark(artifact, result)  # pylint: disable=protected-access
  return artifact


def _push(tmp_path, infra_blessing, max_batch=8):
  """The Pusher as the pipeline wires it: model_blessing + infra_blessing, no model."""
  model_blessing = standard_artifacts.ModelBlessing()
  model_blessing.set_int_custom_property('blessed', 1)
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / 'pushed_model')
  base = str(tmp_path / 'serving_model' / 'image_classifier')
  destination = pusher_pb2.PushDestination(
      filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base))
  AtomicPushExecutor().Do(
      {'model_blessing': [model_blessing], 'infra_blessing': [infra_blessing]},
      {'pushed_model': [pushed]},
      {'push_destination': proto_utils.proto_to_json(destination),
       'custom_config': json.dumps({'serving_config': {'model_name': 'image_classifier',
                                                       'max_batch': max_batch}})})
  return pushed, base


def test_a_serving_candidate_passes_with_its_figures(passed):
  result, output = passed
  assert result.blessed, result.failures
  assert result.signatures == ['examples_numeric', 'serving_default', 'serving_image_bytes']
  assert result.warmup_requests == serving_canary.WARMUP_EXAMPLES * len(result.signatures)
  assert 0 < result.load_seconds < CanaryLimits.max_load_seconds
  assert set(result.latency) == {'1', '8'}
  for figures in result.latency.values():
    assert 0 < figures['p50_ms'] <= figures['p99_ms']
  assert 100 < result.peak_rss_mib < CanaryLimits.max_memory_mib
  line = result.line()
  assert line.startswith('passed: loaded in') and 'batch 8 p50' in line and 'peak RSS' in line


def test_pushed_version_holds_warmup_requests_that_replay(passed, model_dir, tmp_path):
  result, output = passed
  pushed, base = _push(tmp_path, _infra_blessing(output, result))
  assert pushed.get_int_custom_property('pushed') == 1
  version_dir = pushed.get_string_custom_property('pushed_destination')
  requests = list(serving_requests.read_warmup(version_dir))
  named = sorted({r.model_spec.signature_name for r in requests})
  assert named == result.signatures
  served = tf.saved_model.load(version_dir)
  reference = tf.saved_model.load(model_dir).signatures['serving_default']
  examples = photo_examples(NUM_EXAMPLES)
  for request in requests:
    assert request.model_spec.name == 'image_classifier'
    inputs = serving_requests.request_tensors(request)
    outputs = served.signatures[request.model_spec.signature_name](**inputs)
    [values] = inputs.values()
    assert len(values) == 1
    # Which example (by its image: map fields serialize in no fixed order).
    value = values[0].numpy()
    image = value if 'image_bytes' in inputs else serving_requests.image_bytes_of([value])[0]
    [index] = [i for i, e in enumerate(examples)
               if serving_requests.image_bytes_of([e])[0] == image]
    expected = reference(examples=tf.constant(examples[index:index + 1]))['probabilities']
    expected = expected.numpy()
    np.testing.assert_allclose(outputs['probabilities'].numpy(), expected, atol=1e-5)
  # ... and the TF Serving configuration of that push, beside the model folder.
  parsed = serving_config.read_serving_config(serving_config.config_folder(base))
  [model] = parsed[serving_config.MODELS_CONFIG].model_config_list.config
  version = int(os.path.basename(version_dir))
  assert list(model.model_version_policy.specific.versions) == [version]
  assert dict(model.version_labels) == {'stable': version}
  assert parsed[serving_config.BATCHING_CONFIG].max_batch_size.value == 8


def test_signatures_that_refuse_the_requests_and_a_slow_load_fail_and_nothing_is_pushed(
    example_files, tmp_path):
  # Exported with serving.max_batch 2: the warmup requests (one example each) load, but
  # every signature refuses the canary's 4 examples and its timed batch of 8; and a
  # load time limit no model can meet.
  small = export_tiny_model(str(tmp_path / 'small'), serving=ServingConfig(max_batch=2))
  output = str(tmp_path / 'blessing')
  result = serving_canary.run_canary(small, example_files, output, 'image_classifier',
                                     CanaryLimits(**FAST, max_load_seconds=0.001))
  assert not result.blessed
  assert result.failures[0].startswith('load time ')
  assert result.failures[0].endswith('> canary.max_load_seconds=0.001')
  assert len(result.failures) == 1 + 6 + 1  # load, 3 signatures x 2 formats, timed batch
  for name in ('examples_numeric', 'serving_default', 'serving_image_bytes'):
    for fmt in ('REST', 'gRPC'):
      [failure] = [f for f in result.failures if f.startswith(f'{name} ({fmt}) did not answer')]
      assert 'serving.max_batch=2' in failure
  assert any(f.startswith('serving_image_bytes (REST) at batch 8 did not answer') and
             'serving.max_batch=2' in f for f in result.failures)
  assert result.line().startswith('failed: ')
  pushed, base = _push(tmp_path, _infra_blessing(output, result))
  assert pushed.get_int_custom_property('pushed') == 0
  assert not os.path.exists(base)
  assert os.path.exists(os.path.join(output, 'INFRA_NOT_BLESSED'))
  assert not os.path.exists(os.path.join(output, 'stamped_model'))  # no model to push


def test_a_memory_limit_it_cannot_meet_stops_the_process(model_dir, example_files, tmp_path):
  limits = CanaryLimits(**FAST, max_memory_mib=50)
  result = serving_canary.run_canary(model_dir, example_files, str(tmp_path), 'm', limits)
  assert not result.blessed
  assert result.failures[0].startswith('memory: RSS reached ')
  assert 'canary.max_memory_mib=50' in result.failures[0]
