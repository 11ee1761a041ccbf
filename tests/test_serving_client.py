"""`transfer-pipeline predict --server` against a loopback server (tests/loopback_serving.py)
that answers TF Serving's documented REST and gRPC predict APIs with the pushed
SavedModel: the same rows, batches and skip reasons as `predict --model`, and one-line
errors (exit 2) for an unreachable server, a missing model or version, and a server
that refuses every request. No TF Serving binary runs here."""

import os
import shutil
import socket

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from components.inference import prediction_table
from pipeline.configs import ServingConfig
from tests.conftest import encode_image, random_pixels
from tests.loopback_serving import LoopbackServing
from tests.tiny_model import CLASS_NAMES, IMAGE_SIZE, tiny_model, transform_output
from tools import cli
from trainer import export

MODEL = 'image_classifier'
VERSION = 3


@pytest.fixture(scope='module')
def bases(tmp_path_factory):
  """Model name -> base folder holding version 3: the model as pushed; `picky` refuses
  images over 2,000 bytes; `refusing` refuses every image (over 10 bytes)."""
  root = tmp_path_factory.mktemp('serving')
  transform = transform_output(str(root))
  limits = {MODEL: ServingConfig(), 'picky': ServingConfig(max_image_bytes=2000),
            'refusing': ServingConfig(max_image_bytes=10)}
  bases = {}
  for name, serving in limits.items():
    bases[name] = str(root / 'models' / name)
    export.export_serving_model(tiny_model(len(CLASS_NAMES)), transform, CLASS_NAMES,
                                IMAGE_SIZE, os.path.join(bases[name], str(VERSION)), serving)
  return bases


@pytest.fixture(scope='module')
def server(bases):
  with LoopbackServing(bases) as running:
    yield running


@pytest.fixture(scope='module')
def images(tmp_path_factory):
  """Small PNGs, two JPEG photos (scikit-learn's samples, > 2,000 bytes), bad files."""
  root = tmp_path_factory.mktemp('images')
  (root / 'small').mkdir()
  for i in range(7):
    (root / 'small' / f'{i}.png').write_bytes(encode_image(random_pixels((12, 10, 3), i)))
  for name, photo in zip(('china.jpg', 'flower.jpg'), load_sample_images().images):
    Image.fromarray(photo[100:260, 150:350]).save(root / name, quality=90)
  (root / 'empty.png').write_bytes(b'')
  (root / 'notes.jpg').write_bytes(b'just text')
  return root


def _predict(capsys, *args):
  code = cli.main(['predict', *args])
  err = capsys.readouterr().err
  return code, err


def _rows(path):
  return {row['path']: row for row in prediction_table.read_rows(str(path))}


def _assert_same_rows(got, expected, same_names=True):
  assert sorted(got) == sorted(expected)
  for path, row in expected.items():
    assert got[path].get('skipped') == row.get('skipped'), path
    if same_names:
      assert got[path].get('class_name') == row.get('class_name'), path
    if 'probabilities' in row:
      np.testing.assert_allclose(list(got[path]['probabilities'].values()),
                                 list(row['probabilities'].values()), atol=1e-5)


@pytest.mark.parametrize('protocol', ['rest', 'grpc'])
def test_server_rows_equal_the_in_process_rows(protocol, server, bases, images, tmp_path,
                                               capsys):
  version_dir = os.path.join(bases[MODEL], str(VERSION))
  local = tmp_path / 'local.csv'
  assert _predict(capsys, '--model', version_dir, str(images), '--output', str(local),
                  '--batch-size', '3')[0] == 0
  remote = tmp_path / 'remote.jsonl'
  url = server.rest_url if protocol == 'rest' else server.grpc_url
  calls = server.servables.predict_calls
  code, err = _predict(capsys, '--server', url, str(images), '--output', str(remote),
                       '--batch-size', '3', '--class-names', *CLASS_NAMES,
                       '--image-size', str(IMAGE_SIZE))
  assert code == 0, err
  assert f'Model: {url if protocol == "grpc" else url + "/v1/models/" + MODEL}' in err
  rows = _rows(remote)
  _assert_same_rows(rows, _rows(local))
  assert sum('skipped' in r for r in rows.values()) == 2
  # 9 images in batches of 3 (the files are read in order, bad ones ride along).
  assert server.servables.predict_calls - calls == 3


def test_an_image_size_below_the_model_minimum_is_refused_at_once(server, images, capsys):
  code, err = _predict(capsys, '--server', server.rest_url, '--image-size', '10', str(images))
  assert code == 2 and err.strip().splitlines()[-1].startswith('error: --image-size: expected')


def test_a_refused_image_is_skipped_as_in_process(server, bases, images, tmp_path, capsys):
  local = tmp_path / 'local.csv'
  version_dir = os.path.join(bases['picky'], str(VERSION))
  assert _predict(capsys, '--model', version_dir, str(images), '--output', str(local))[0] == 0
  remote = tmp_path / 'remote.csv'
  code, err = _predict(capsys, '--server', server.rest_url, '--model-name', 'picky',
                       '--model-version', str(VERSION), str(images), '--output', str(remote))
  assert code == 0, err
  rows = _rows(remote)
  _assert_same_rows(rows, _rows(local), same_names=False)  # no --class-names given
  photos = [r for p, r in rows.items() if p.endswith(('china.jpg', 'flower.jpg'))]
  assert [r['skipped'] for r in photos] == ['not a decodable image'] * 2
  header = remote.read_text().splitlines()[0]
  assert header == 'path,class_name,class_0,class_1,skipped'  # no --class-names given


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _one_line_error(capsys, *args) -> str:
  code, err = _predict(capsys, *args)
  *before, last = err.strip().splitlines()
  assert code == 2, err
  assert all(line.startswith('Model: ') for line in before), err  # connected, then failed
  assert last.startswith('error: ')
  return last


@pytest.mark.parametrize('scheme', ['http', 'grpc'])
def test_unreachable_server(scheme, images, capsys):
  line = _one_line_error(capsys, '--server', f'{scheme}://127.0.0.1:{_free_port()}',
                         str(images))
  assert 'cannot reach' in line


@pytest.mark.parametrize('protocol', ['rest', 'grpc'])
def test_missing_model_or_version(protocol, server, images, capsys):
  url = server.rest_url if protocol == 'rest' else server.grpc_url
  line = _one_line_error(capsys, '--server', url, '--model-name', 'nope', str(images))
  assert "model 'nope' not found: Servable not found for request: Latest(nope)" in line
  line = _one_line_error(capsys, '--server', url, '--model-version', '9', str(images))
  assert f"model '{MODEL}' version 9 not found" in line and f'Specific({MODEL}, 9)' in line


@pytest.mark.parametrize('protocol', ['rest', 'grpc'])
def test_a_server_that_refuses_every_request(protocol, server, images, capsys):
  url = server.rest_url if protocol == 'rest' else server.grpc_url
  line = _one_line_error(capsys, '--server', url, '--model-name', 'refusing', str(images))
  assert line.endswith('refused the request: assertion failed: '
                       '[Refused: an image is over serving.max_image_bytes=10 bytes]')


def test_bad_server_addresses_answer_before_tensorflow(capsys):
  for url, words in (('localhost:8501', 'expected http://HOST:PORT'),
                     ('grpc://localhost', 'needs its port'),
                     ('http://localhost:8501/v1/models/x', 'give the server only')):
    assert words in _one_line_error(capsys, '--server', url, 'x.jpg')
  assert 'not allowed with argument' in _one_line_error(
      capsys, '--server', 'http://localhost:1', '--model', 'm', 'x.jpg')


def test_class_names_must_fit_the_model(server, images, capsys):
  line = _one_line_error(capsys, '--server', server.rest_url, str(images),
                         '--class-names', 'a', 'b', 'c')
  assert '--class-names: 3 names' in line and 'has 2 classes' in line
