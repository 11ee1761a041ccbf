"""Folders of real photos as people have them, made from scikit-learn's sample photos.

`china.jpg` and `flower.jpg` (640x427, shipped with scikit-learn, no download) are
cropped at different places and sizes into JPEG "phone photos" of two classes, with
what real folders hold: EXIF orientation tags (the pixels stored sideways), macOS
AppleDouble sidecars and `.DS_Store`, `Thumbs.db`, `desktop.ini`, Google Takeout
`.json` sidecars, the same photo under several names, and 30-megapixel shots.
"""

import io
import os
from typing import Dict, List

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images

CLASSES = ('china', 'flower')
# How Pillow's exif_transpose turns stored pixels upright, per EXIF orientation; storing
# a picture under orientation o means applying the inverse.
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}
_INVERSE = {Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
            Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270}
APPLEDOUBLE = b'\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ' + b'\x00' * 64
SIDECARS = {'.DS_Store': b'\x00\x00\x00\x01Bud1' + b'\x00' * 32,
            'Thumbs.db': b'\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1' + b'\x00' * 32,
            'desktop.ini': b'[.ShellClassInfo]\r\nIconResource=x\r\n'}


def sample_photos() -> Dict[str, np.ndarray]:
  """{'china': HxWx3 uint8, 'flower': ...} from scikit-learn."""
  samples = load_sample_images()
  return {os.path.splitext(os.path.basename(name))[0].split('.')[0]: image
          for name, image in zip(samples.filenames, samples.images)}


def crop(photo: np.ndarray, index: int, size=(200, 150)) -> Image.Image:
  """A distinct crop of `photo`, resized to `size` (width, height)."""
  rng = np.random.default_rng(index)
  height, width = photo.shape[:2]
  box_w, box_h = int(width * rng.uniform(0.4, 0.7)), int(height * rng.uniform(0.4, 0.7))
  left, top = int(rng.integers(0, width - box_w)), int(rng.integers(0, height - box_h))
  return Image.fromarray(photo[top:top + box_h, left:left + box_w]).resize(size)


def jpeg(image: Image.Image, orientation: int = 1, quality: int = 90) -> bytes:
  """JPEG bytes that display as `image`: stored sideways with an EXIF orientation tag
  when `orientation` is 2..8."""
  exif = Image.Exif()
  if orientation != 1:
    to_upright = _UPRIGHT[orientation]
    image = image.transpose(_INVERSE.get(to_upright, to_upright))
    exif[0x0112] = orientation
  out = io.BytesIO()
  image.save(out, format='JPEG', quality=quality, exif=exif.tobytes())
  return out.getvalue()


def strip_exif(data: bytes) -> bytes:
  """The same JPEG pixels without the EXIF block (APP1): displayed as stored."""
  pos = 2
  while data[pos:pos + 2] != b'\xff\xe1':
    pos += 2 + int.from_bytes(data[pos + 2:pos + 4], 'big')
  return data[:pos] + data[pos + 2 + int.from_bytes(data[pos + 2:pos + 4], 'big'):]


def big_jpeg(photo: np.ndarray, index: int, size=(6000, 5000)) -> bytes:
  """A 30-megapixel JPEG (6000x5000 by default)."""
  return jpeg(crop(photo, index, size), quality=80)


def write_photo_folder(root: str, per_class: int = 14, orientations=(3, 6, 8),
                       big_per_class: int = 0, sidecars: bool = True,
                       presplit: bool = False) -> List[str]:
  """Two classes of phone photos under `root`; returns the photos' relative paths.

  Every third photo carries an EXIF orientation from `orientations`; with `sidecars`,
  every photo has its `._` AppleDouble and Takeout `.json` sidecar and each folder its
  `.DS_Store`, `Thumbs.db` and `desktop.ini`. `big_per_class` of each class's photos are
  30 MP. `presplit`: `train/` and `validation/` folders (a quarter of each class, big
  photos in both)."""
  photos = sample_photos()
  written = []
  for name in CLASSES:
    for i in range(per_class):
      split = ''
      if presplit:
        split = 'validation' if i % 4 == 0 else 'train'
      folder = os.path.join(root, split, name)
      os.makedirs(folder, exist_ok=True)
      file_name = f'IMG_{i:04d}.jpg'
      if i < big_per_class:
        data = big_jpeg(photos[name], i)
      else:
        orientation = orientations[i // 3 % len(orientations)] if i % 3 == 0 else 1
        data = jpeg(crop(photos[name], i), orientation)
      with open(os.path.join(folder, file_name), 'wb') as f:
        f.write(data)
      written.append(os.path.join(split, name, file_name))
      if sidecars:
        with open(os.path.join(folder, '._' + file_name), 'wb') as f:
          f.write(APPLEDOUBLE)
        with open(os.path.join(folder, file_name + '.json'), 'w') as f:
          f.write('{"title": "%s", "photoTakenTime": {"timestamp": "0"}}' % file_name)
    if sidecars:
      for folder in {os.path.join(root, s, name) for s in (('train', 'validation') if presplit else ('',))}:
        for sidecar, data in SIDECARS.items():
          with open(os.path.join(folder, sidecar), 'wb') as f:
            f.write(data)
  return written
