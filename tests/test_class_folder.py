"""Class-folder images in memory, as `calibrate-weights` and `pretrain` load them."""

import h5py
import numpy as np
import pytest

from components.example_gen.ingest_summary import IngestError
from tools import cli
from tools.class_folder import load_class_folder
from tests.conftest import encode_image


def _write(folder, count: int, value: int) -> None:
  folder.mkdir(parents=True)
  for i in range(count):
    (folder / f'{i}.png').write_bytes(encode_image(np.full((8, 8, 3), value, np.uint8)))


@pytest.fixture
def folder_with_strays(tmp_path):
  root = tmp_path / 'images'
  _write(root / 'cats', 3, 10)
  _write(root / 'dogs', 2, 200)
  (root / 'cats' / '.DS_Store').write_bytes(b'\x00\x00\x00\x01Bud1')
  (root / 'dogs' / 'notes.txt').write_text('not an image')
  (root / 'dogs' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n')
  return root


def test_stray_files_are_skipped_and_counted(folder_with_strays):
  loaded = load_class_folder(str(folder_with_strays), image_size=16)
  assert loaded.class_names == ['cats', 'dogs']
  assert loaded.images.shape == (5, 16, 16, 3) and loaded.images.dtype == np.uint8
  assert sorted(loaded.labels.tolist()) == [0, 0, 0, 1, 1]
  assert loaded.images[loaded.labels == 1].min() == 200
  assert loaded.skipped == 3  # .DS_Store (hidden), notes.txt (not an image), broken.png


def test_per_class_limit_and_pre_split_folders(tmp_path):
  _write(tmp_path / 'train' / 'cats', 4, 10)
  _write(tmp_path / 'train' / 'dogs', 4, 200)
  _write(tmp_path / 'validation' / 'cats', 1, 10)
  _write(tmp_path / 'validation' / 'dogs', 1, 200)
  loaded = load_class_folder(str(tmp_path), image_size=8, per_class=2)
  assert loaded.class_names == ['cats', 'dogs']  # not 'train' and 'validation'
  assert loaded.labels.tolist().count(0) == 2 and loaded.labels.tolist().count(1) == 2


def test_one_class_fails_clearly(tmp_path):
  _write(tmp_path / 'cats', 2, 10)
  with pytest.raises(IngestError, match=r"at least two class folders.*\['cats'\]"):
    load_class_folder(str(tmp_path), image_size=8)


def test_calibrate_weights_cli_ignores_stray_files(folder_with_strays, tmp_path):
  output = tmp_path / 'calibrated_notop.h5'
  code = cli.main(['calibrate-weights', '--data', str(folder_with_strays),
                   '--output', str(output), '--image-size', '75'])
  assert code == 0
  assert h5py.is_hdf5(str(output))


def test_a_symlinked_data_folder_loads_as_the_folder_itself(folder_with_strays, tmp_path):
  """`calibrate-weights --data link` read every file as a symlink leaving the data folder
  (its paths under the link, its root resolved): all unreadable, no classes."""
  link = tmp_path / 'link'
  link.symlink_to(folder_with_strays)
  direct, linked = load_class_folder(str(folder_with_strays), 8), load_class_folder(str(link), 8)
  assert linked.class_names == direct.class_names == ['cats', 'dogs']
  assert (linked.skipped, len(linked.images)) == (direct.skipped, 5)
  np.testing.assert_array_equal(linked.images, direct.images)
