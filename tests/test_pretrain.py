"""`transfer-pipeline pretrain`: a source task's backbone saved in the lesson's _notop.h5 form."""

import numpy as np
import pytest
import tf_keras as keras

from components.example_gen.ingest_summary import IngestError
from tools import cli, pretrain
from pipeline.configs import ModelConfig
from tests.conftest import encode_image
from trainer import model as model_lib


def _write_class(root, name: str, count: int, bright: bool) -> None:
  folder = root / name
  folder.mkdir(parents=True)
  rng = np.random.default_rng(len(name))
  for i in range(count):
    pixels = rng.integers(0, 100, (16, 16, 3), dtype=np.uint8) + (150 if bright else 0)
    (folder / f'{i}.png').write_bytes(encode_image(pixels.astype(np.uint8)))


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
  root = tmp_path_factory.mktemp('source')
  _write_class(root / 'images', 'dark', 4, bright=False)
  _write_class(root / 'images', 'bright', 4, bright=True)
  output = str(root / 'weights' / 'source_notop.h5')
  result = pretrain.pretrain(str(root / 'images'), output, image_size=75, epochs=1,
                             batch_size=4, holdout_percent=0, log=None)
  return result


def test_writes_weights_the_lesson_loads(pretrained):
  assert pretrained.class_names == ['bright', 'dark'] and pretrained.num_train == 8
  assert 0.0 <= pretrained.holdout_accuracy <= 1.0
  loaded = model_lib.build_backbone(ModelConfig(weights=pretrained.path, image_size=75))
  # The backbone (cut at mixed7) holds the first layers of the saved top-less InceptionV3.
  saved = pretrained.base.layers[:len(loaded.layers)]
  assert [type(l) for l in loaded.layers] == [type(l) for l in saved]
  loaded_weights = [w.numpy() for l in loaded.layers for w in l.weights]
  saved_weights = [w.numpy() for l in saved for w in l.weights]
  assert len(loaded_weights) == len(saved_weights) > 100
  for got, want in zip(loaded_weights, saved_weights):
    np.testing.assert_array_equal(got, want)


def test_weights_differ_from_random_init(pretrained):
  keras.utils.set_random_seed(0)  # pretrain's seed: the very initial weights
  init, _ = pretrain.build_classifier(75, 2)
  trained = pretrained.base
  kernel = trained.layers.index(next(l for l in trained.layers if 'conv2d' in l.name))
  batchnorm = trained.layers.index(
      next(l for l in trained.layers if 'batch_normalization' in l.name))
  assert not np.allclose(trained.layers[kernel].kernel.numpy(), init.layers[kernel].kernel.numpy())
  # BatchNorm statistics were recalibrated on the images (Keras starts at 0 and 1).
  assert not np.allclose(trained.layers[batchnorm].moving_mean.numpy(),
                         init.layers[batchnorm].moving_mean.numpy())


@pytest.mark.parametrize('classes, message', [
    ({}, 'at least two class folders'),
    ({'only': 3}, r"at least two class folders.*\['only'\]"),
])
def test_bad_data_fails_clearly(tmp_path, classes, message):
  for name, count in classes.items():
    _write_class(tmp_path / 'images', name, count, bright=False)
  (tmp_path / 'images').mkdir(exist_ok=True)
  with pytest.raises(IngestError, match=message):
    pretrain.pretrain(str(tmp_path / 'images'), str(tmp_path / 'w.h5'), log=None)


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
  code = cli.main(['pretrain', '--data', str(tmp_path / 'missing'),
                   '--output', str(tmp_path / 'w.h5')])
  assert code == 2
  assert 'does not exist' in capsys.readouterr().err
  code = cli.main(['pretrain', '--data', str(tmp_path), '--output', str(tmp_path / 'w.txt')])
  assert code == 2
  assert '.h5' in capsys.readouterr().err
