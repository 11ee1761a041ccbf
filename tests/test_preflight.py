"""Bad settings fail in `load_config` / `validate` / `preflight.check`, before any pipeline work.

Each case goes through the same steps as `transfer-pipeline run` (config file and
overrides -> validate -> preflight.check); the functions behind them are unit
tested in test_configs.py and test_model.py. The CLI test checks that the
pipeline itself never starts and that the error is one line.
"""

import http.server
import os
import socket
import threading
import time

import pytest
import tf_keras as keras

from pipeline import local_runner
from tools import cli, preflight
from contract.settings import ModelConfig
from pipeline.configs import ConfigError, load_config
from tests.conftest import encode_image, random_pixels
from trainer.model import ModelConfigError, write_calibrated_weights


def _preflight(config_file=None, **overrides):
  """`transfer-pipeline run`'s checks: config file + overrides, validate, preflight."""
  overrides = {k.replace('__', '.'): v for k, v in overrides.items()}
  config = load_config(config_file, overrides).validate()
  preflight.check(config)
  return config


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp('data')
  for i, name in enumerate(('cats', 'dogs')):
    (root / name).mkdir()
    for j in range(2):
      (root / name / f'{j}.png').write_bytes(encode_image(random_pixels((75, 75, 3), 10 * i + j)))
  return str(root)


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
  """Valid calibrated weights, a truncated copy, and weights of another architecture."""
  folder = tmp_path_factory.mktemp('weights')
  valid = str(folder / 'calibrated_notop.h5')
  write_calibrated_weights(valid, random_pixels((3, 75, 75, 3)))
  truncated = folder / 'truncated_notop.h5'
  with open(valid, 'rb') as f:
    truncated.write_bytes(f.read()[:os.path.getsize(valid) // 2])
  other = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                            keras.layers.Flatten(), keras.layers.Dense(2)])
  other_path = str(folder / 'small_cnn.h5')
  other.save_weights(other_path)
  return {'valid': valid, 'truncated': str(truncated), 'other': other_path}


def test_valid_calibrated_weights_pass(data, weights):
  config = _preflight(data__path=data, model__weights=weights['valid'], model__image_size=75)
  assert config.model.weights == weights['valid']


@pytest.mark.parametrize('which, error, message', [
    ('missing', ConfigError, r'Weights file .*missing_notop\.h5 does not exist'),
    ('truncated', ModelConfigError, r'truncated_notop\.h5 does not fit .* or is truncated'),
    ('other', ModelConfigError, r'small_cnn\.h5 does not fit a top-less InceptionV3'),
])
def test_bad_weights_file_fails_in_preflight(data, weights, tmp_path, which, error, message):
  path = weights.get(which, str(tmp_path / 'missing_notop.h5'))
  with pytest.raises(error, match=message):
    _preflight(data__path=data, model__weights=path, model__image_size=75)


def test_unknown_cut_layer_lists_the_valid_names(data, tmp_path):
  config_file = tmp_path / 'c.yaml'
  config_file.write_text('model: {cut_layer: mixed_7, image_size: 75, weights: none}\n')
  with pytest.raises(ModelConfigError,
                     match=r"Unknown cut layer 'mixed_7'\. Valid names: mixed0, mixed1, .*mixed10"):
    _preflight(str(config_file), data__path=data)


@pytest.mark.parametrize('yaml_text, message', [
    ('model: {image_size: 74}\n', r'model\.image_size: expected an integer >= 75'),
    ('model: {image_sise: 150}\n',
     r'Unknown config key model\.image_sise; allowed keys in model: cut_layer, dense_units, '
     r'dropout, feature_precision, image_size, pooling, weights'),
    ('data: {eval_percent: twenty}\n', r"data\.eval_percent must be an integer, got 'twenty'"),
    ('training: {augment: maybe}\n', r"training\.augment must be true or false, got 'maybe'"),
    ('model: {weights: weights.pt}\n',
     r"model\.weights: expected 'imagenet', 'none' or a path to an \.h5 weights file"),
    ('data: {max_skipped_fraction: 1.5}\n', r'data\.max_skipped_fraction: expected a number'),
    ('- a list\n', r'must hold a mapping of settings'),
])
def test_bad_config_file_names_the_field_and_allowed_values(data, tmp_path, yaml_text, message):
  config_file = tmp_path / 'c.yaml'
  config_file.write_text(yaml_text)
  with pytest.raises(ConfigError, match=message):
    _preflight(str(config_file), data__path=data)


def test_bad_data_folder_fails_in_preflight(tmp_path):
  with pytest.raises(ConfigError, match=r'data\.path: .*missing is not a folder'):
    _preflight(data__path=str(tmp_path / 'missing'))


def test_cli_run_stops_before_the_pipeline_with_one_line(data, tmp_path, monkeypatch, capsys):
  def must_not_run(config):
    raise AssertionError(f'the pipeline started with a bad setting: {config}')
  monkeypatch.setattr(local_runner, 'run', must_not_run)
  config_file = tmp_path / 'c.yaml'
  config_file.write_text('training: {epochs: ten}\n')
  cases = [
      (['--config', str(config_file)], 'training.epochs must be an integer'),
      (['--image-size', '74'], 'model.image_size: expected an integer >= 75'),
      (['--weights', str(tmp_path / 'nope.h5'), '--image-size', '75'], 'does not exist'),
  ]
  for args, message in cases:
    code = cli.main(['run', '--data', data, '--output', str(tmp_path / 'run'), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith('error: ') and message in err, err
    assert len(err.strip().splitlines()) == 1, err
  assert not (tmp_path / 'run').exists()


def test_missing_inference_folder_fails_before_any_work(data, tmp_path):
  with pytest.raises(ConfigError, match='inference.data: .* is not a folder'):
    _preflight(data__path=data, inference__data=str(tmp_path / 'missing'))


def test_remote_inference_folder_is_left_to_its_example_gen(data):
  """A URI is listed when the unlabeled ExampleGen runs (it raised here before)."""
  config = load_config(overrides={'data.path': data, 'model.weights': 'none',
                                  'inference.data': 's3://bucket/unlabeled'}).validate()
  preflight.check_files(config)


# The lesson's ImageNet weights by default, and the answer when they cannot be had ---------

@pytest.fixture
def no_keras_cache(tmp_path, monkeypatch):
  """A HOME whose Keras cache has no ImageNet weights."""
  home = tmp_path / 'home'
  (home / '.keras').mkdir(parents=True)
  monkeypatch.setenv('HOME', str(home))
  return home


@pytest.fixture
def silent_server():
  """A loopback port that accepts connections and never answers."""
  server = socket.socket()
  server.bind(('127.0.0.1', 0))
  server.listen(8)
  try:
    yield f'http://127.0.0.1:{server.getsockname()[1]}/{preflight.IMAGENET_WEIGHTS_FILE}'
  finally:
    server.close()


def test_imagenet_is_the_default_as_in_the_lesson(data):
  assert ModelConfig().weights == 'imagenet'
  assert load_config(overrides={'data.path': data}).model.weights == 'imagenet'
  args = cli.build_parser().parse_args(['run', '--data', data])
  assert cli._run_config(args).model.weights == 'imagenet'  # pylint: disable=protected-access


def test_the_probe_names_what_keras_downloads():
  from tf_keras.src.applications import inception_v3  # pylint: disable=g-import-not-at-top
  assert preflight.IMAGENET_WEIGHTS_URL == inception_v3.WEIGHTS_PATH_NO_TOP
  assert preflight.keras_cache_file().endswith(
      os.path.join('.keras', 'models', 'inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5'))


def test_offline_the_run_stops_in_one_line_saying_how_to_pass_weights(
    data, tmp_path, no_keras_cache, silent_server, monkeypatch, capsys):
  def must_not_run(config, listener=None):
    raise AssertionError(f'the pipeline started without weights: {config}')
  monkeypatch.setattr(local_runner, 'run', must_not_run)
  monkeypatch.setattr(preflight, 'IMAGENET_WEIGHTS_URL', silent_server)
  monkeypatch.setattr(preflight, 'PROBE_SECONDS', 0.5)
  start = time.monotonic()
  code = cli.main(['run', '--data', data, '--output', str(tmp_path / 'run')])
  seconds = time.monotonic() - start
  err = capsys.readouterr().err
  assert code == 2 and len(err.strip().splitlines()) == 1, err
  assert err.startswith("error: model.weights: 'imagenet' (the default) needs the ImageNet "
                        'weights, which are not in the Keras cache'), err
  assert str(no_keras_cache / '.keras' / 'models') in err and 'no answer within 0.5 s' in err
  assert ('--weights path/to/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5' in err
          and '--weights none' in err), err
  assert seconds < 5, seconds  # a server that never answers cannot hang the run
  assert not (tmp_path / 'run').exists()


def test_a_refused_download_is_named(data, no_keras_cache, monkeypatch):
  with socket.socket() as closed:  # bound, not listening: connections are refused
    closed.bind(('127.0.0.1', 0))
    monkeypatch.setattr(preflight, 'IMAGENET_WEIGHTS_URL',
                        f'http://127.0.0.1:{closed.getsockname()[1]}/x_notop.h5')
    with pytest.raises(ConfigError, match=r'cannot be downloaded \(.*[Rr]efused\)'):
      preflight.check_files(load_config(overrides={'data.path': data}))


def test_imagenet_weights_in_the_keras_cache_need_no_network(data, no_keras_cache, monkeypatch):
  cached = no_keras_cache / '.keras' / 'models' / preflight.IMAGENET_WEIGHTS_FILE
  cached.parent.mkdir()
  cached.write_bytes(b'weights')
  monkeypatch.setattr(preflight, 'unreachable', lambda *a: pytest.fail('probed the network'))
  preflight.check_files(load_config(overrides={'data.path': data}))
  assert 'Keras cache' in preflight.describe_weights('imagenet')


def test_imagenet_weights_online_pass(data, no_keras_cache, monkeypatch):
  """A server that answers (here any HTTP status, on loopback) means Keras can download."""
  class Answer(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):  # pylint: disable=invalid-name
      self.send_response(200)
      self.end_headers()

    def log_message(self, *args):
      pass

  server = http.server.HTTPServer(('127.0.0.1', 0), Answer)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    monkeypatch.setattr(preflight, 'IMAGENET_WEIGHTS_URL',
                        f'http://127.0.0.1:{server.server_port}/weights_notop.h5')
    preflight.check_files(load_config(overrides={'data.path': data}))
    assert preflight.unreachable(preflight.IMAGENET_WEIGHTS_URL) is None
  finally:
    server.shutdown()
    server.server_close()


def test_span_pattern_checked_before_the_run(tmp_path):
  """A `{SPAN}` data.path: its parent folder must exist, and a span must match it."""
  from components.example_gen.ingest_summary import IngestError  # pylint: disable=g-import-not-at-top
  with pytest.raises(ConfigError, match='folder of the span folders'):
    preflight.check_files(load_config(overrides={'data.path': str(tmp_path / 'no' / 'w-{SPAN}'),
                                                 'model.weights': 'none'}))
  (tmp_path / 'w-7' / 'cats').mkdir(parents=True)
  preflight.check_files(load_config(overrides={'data.path': str(tmp_path / 'w-{SPAN}'),
                                               'model.weights': 'none'}))
  with pytest.raises(IngestError, match=r'No folder matches data.path .*week-\{SPAN\}\.$'):
    _preflight(data__path=str(tmp_path / 'week-{SPAN}'), model__image_size=75, model__weights='none')
