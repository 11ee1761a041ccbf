"""Real photo folders as people have them: a symlinked data root, Mac and Windows sidecar
files, phone photos with EXIF orientations, 30-megapixel shots, the same photo saved
under several names (tests/real_photos.py makes them from scikit-learn's sample photos)."""

import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from components.example_gen import image_ingest, image_walk, ingest_pipeline
from contract.settings import ServingConfig, max_stored_bytes
from pipeline.configs import ConfigError, load_config
from tests import real_photos
from tests.test_ingest import feature, read_examples
from trainer import image_limits
from trainer.preprocessing import decode_and_resize


def _linked(tmp_path, **kwargs) -> str:
  """A photo folder reached through a symlink (as `data -> /mnt/datasets/pets`)."""
  real = tmp_path / 'mnt' / 'datasets' / 'pets'
  real_photos.write_photo_folder(str(real), **kwargs)
  link = tmp_path / 'data'
  link.symlink_to(real, target_is_directory=True)
  return str(link)


def _stored(out):
  return {feature(e, 'filename').decode(): (split, feature(e, 'image'))
          for split in ('train', 'eval') for e in read_examples(out, split)}


def test_symlinked_root_with_sidecars_ingests_every_photo(tmp_path):
  root = _linked(tmp_path, per_class=6)
  out = str(tmp_path / 'out')
  summary = ingest_pipeline.ingest(root, out, max_skipped_fraction=0.0)  # strict: no bad file
  assert summary.total_skipped == 0, summary.skipped_files
  assert sum(sum(s.values()) for s in summary.written.values()) == 12
  # Per class: 6 AppleDouble + 6 Takeout .json sidecars, .DS_Store, Thumbs.db, desktop.ini.
  assert summary.ignored == {'china': 15, 'flower': 15}
  ignored = {r['path']: r for r in summary.skipped_files}
  assert all(r['ignored'] for r in ignored.values())
  assert ignored['china/._IMG_0000.jpg']['detail'] == 'macOS AppleDouble sidecar'
  assert ignored['china/.DS_Store']['reason'] == 'hidden file'
  assert ignored['flower/Thumbs.db']['detail'] == 'Windows thumbnail cache'
  assert ignored['flower/IMG_0001.jpg.json']['reason'] == 'not an image file extension'
  with open(os.path.join(out, ingest_pipeline.SUMMARY_FILE)) as f:
    assert json.load(f)['total_ignored'] == 30


def test_predict_walks_a_symlinked_root(tmp_path):
  root = _linked(tmp_path, per_class=3)
  found = list(image_walk.walk_images([root], 40_000_000))
  photos = [f for f in found if f.image is not None]
  assert len(photos) == 6 and all(f.reason is None for f in photos)
  assert {f.reason for f in found if f.image is None} == {
      'hidden file', 'not an image file extension'}


def test_exif_photos_are_stored_as_taken_and_decode_upright(tmp_path):
  photo = real_photos.sample_photos()['flower']
  upright = real_photos.crop(photo, 3, size=(120, 80))
  root = tmp_path / 'photos'
  for name in ('a', 'b'):
    (root / name).mkdir(parents=True)
  files = {o: real_photos.jpeg(upright, o) for o in range(1, 9)}
  for o, data in files.items():
    (root / 'a' / f'{o}.jpg').write_bytes(data)
    (root / 'b' / f'{o}.jpg').write_bytes(real_photos.jpeg(upright.rotate(90 * o), o))
  out = str(tmp_path / 'out')
  ingest_pipeline.ingest(str(root), out)
  stored = _stored(out)
  reference = decode_and_resize(tf.constant([files[1]]), 75).numpy()[0].astype(int)
  for o, data in files.items():
    _, image = stored[f'a/{o}.jpg']
    assert image == data  # not re-encoded: the model's decoder honours the tag
    pixels = decode_and_resize(tf.constant([image]), 75).numpy()[0].astype(int)
    assert np.abs(pixels - reference).mean() < 3, o  # JPEG noise, not a rotation


def test_30_megapixel_photos_are_stored_downscaled(tmp_path):
  root = str(tmp_path / 'photos')
  real_photos.write_photo_folder(root, per_class=4, big_per_class=1, sidecars=False)
  out = str(tmp_path / 'out')
  summary = ingest_pipeline.ingest(root, out, max_image_side=300)
  assert summary.downscaled == 2 and summary.total_skipped == 0
  limits = ServingConfig()
  for name, (_, image) in _stored(out).items():
    with Image.open(io.BytesIO(image)) as stored:
      size = ImageOps.exif_transpose(stored).size  # as displayed
    if name.endswith('IMG_0000.jpg'):
      assert max(size) == 300 and size == (300, 250), name  # 6000x5000 -> aspect kept
    else:
      assert size == (200, 150), name  # small photos kept as they are
    assert len(image) <= max_stored_bytes(300)
  images = [image for _, image in _stored(out).values()]
  image_limits.checked_images(tf.constant(images[:limits.max_batch]), limits)  # no refusal


def test_downscaling_keeps_exif_photos_upright(tmp_path):
  upright = real_photos.crop(real_photos.sample_photos()['china'], 1, size=(800, 600))
  sideways = real_photos.jpeg(upright, 6)
  stored = image_ingest.store_image(sideways, 10**8, max_side=300)
  assert stored.downscaled
  with Image.open(io.BytesIO(stored.data)) as image:
    assert image.size == (300, 225) and image.getexif().get(0x0112, 1) == 1
    pixels = np.asarray(image.convert('RGB'), dtype=int)
  expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(sideways))).resize(
      (300, 225)), dtype=int)
  assert np.abs(pixels - expected).mean() < 4


def test_identical_photo_under_three_names_in_two_classes(tmp_path):
  root = tmp_path / 'photos'
  real_photos.write_photo_folder(str(root), per_class=10, sidecars=False)
  same = real_photos.jpeg(real_photos.crop(real_photos.sample_photos()['china'], 99))
  (root / 'china' / 'holiday.jpg').write_bytes(same)
  (root / 'china' / 'holiday (1).jpg').write_bytes(same)
  (root / 'flower' / 'IMG_9999.jpg').write_bytes(same)
  twin = real_photos.jpeg(real_photos.crop(real_photos.sample_photos()['flower'], 98))
  (root / 'flower' / 'a.jpg').write_bytes(twin)
  (root / 'flower' / 'b.jpg').write_bytes(twin)
  out = str(tmp_path / 'out')
  summary = ingest_pipeline.ingest(str(root), out, eval_percent=30)
  stored = _stored(out)
  # Filed under two classes: train, all three of them.
  assert {stored[n][0] for n in ('china/holiday.jpg', 'china/holiday (1).jpg',
                                 'flower/IMG_9999.jpg')} == {'train'}
  assert stored['flower/a.jpg'][0] == stored['flower/b.jpg'][0]
  assert sorted(summary.duplicates) == [
      ['china/holiday (1).jpg', 'china/holiday.jpg', 'flower/IMG_9999.jpg'],
      ['flower/a.jpg', 'flower/b.jpg']]


def test_identical_files_in_train_and_validation_are_reported(tmp_path):
  root = tmp_path / 'photos'
  real_photos.write_photo_folder(str(root), per_class=8, sidecars=False, presplit=True)
  leak = (root / 'train' / 'china' / 'IMG_0001.jpg').read_bytes()
  (root / 'validation' / 'china' / 'copy.jpg').write_bytes(leak)
  summary = ingest_pipeline.ingest(str(root), str(tmp_path / 'out'))
  assert summary.leaks == [['train/china/IMG_0001.jpg', 'validation/china/copy.jpg']]
  assert any('inflate eval accuracy' in w for w in summary.warnings)


@pytest.mark.parametrize('overrides, message', [
    ({'data.max_side_multiple': 40}, r'data\.max_side_multiple.*serving\.max_image_pixels'),
    ({'data.max_side_multiple': 10, 'serving.max_image_bytes': 2_000_000},
     r'data\.max_side_multiple.*serving\.max_image_bytes'),
    ({'data.max_side_multiple': 0}, r'data\.max_image_pixels.*serving\.max_image_pixels'),
])
def test_a_stored_image_over_a_serving_limit_is_refused(overrides, message):
  config = load_config(overrides={'data.path': 'x', **overrides})
  with pytest.raises(ConfigError, match=message):
    config.validate()
  load_config(overrides={'data.path': 'x'}).validate()  # the defaults fit
