"""A small pre-split class folder of real photo crops with known, planted problems.

Crops of scikit-learn's two sample photos (a temple, `china`, and a flower, `flower`),
saved as JPEGs in train/<class>/ and validation/<class>/, then:
  - mislabeled: photos of one class moved into the other class's folder;
  - leak: a resized, re-encoded near-copy of an eval photo placed in train;
  - dark: an all-black frame; blurry: a strongly blurred copy of a photo.
`write_planted_folder` returns each planted file (relative to the folder) with the kind
it should get, and every file a planted problem made or touched (copies and their
sources): a finding on any other file is a false alarm.
"""

import io
import os
from typing import Dict, List, Set, Tuple

import numpy as np
from PIL import Image, ImageFilter
from sklearn.datasets import load_sample_images

CLASSES = ('china', 'flower')


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
  out = io.BytesIO()
  image.save(out, format='JPEG', quality=quality)
  return out.getvalue()


def _overlap(a, b) -> float:
  """Intersection over union of two (top, left, side) squares."""
  height = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
  width = max(0, min(a[1] + a[2], b[1] + b[2]) - max(a[1], b[1]))
  inter = height * width
  return inter / (a[2] ** 2 + b[2] ** 2 - inter)


def _crops(photo: np.ndarray, rng: np.random.Generator, count: int, size: int = 96,
           max_overlap: float = 0.4) -> List[Image.Image]:
  """`count` random square crops of 150..260 pixels resized to `size`, no two
  overlapping by more than `max_overlap` (intersection over union): distinct photos,
  not copies of each other."""
  height, width = photo.shape[:2]
  boxes = []
  while len(boxes) < count:
    side = int(rng.integers(150, 261))
    box = (int(rng.integers(0, height - side)), int(rng.integers(0, width - side)), side)
    if all(_overlap(box, other) <= max_overlap for other in boxes):
      boxes.append(box)
  return [Image.fromarray(photo[top:top + side, left:left + side]).resize((size, size))
          for top, left, side in boxes]


def write_planted_folder(root: str, train_per_class: int = 24, eval_per_class: int = 8,
                         seed: int = 0) -> Tuple[Dict[str, str], Set[str]]:
  """Writes the folder; returns (planted file -> expected kind, every involved file)."""
  rng = np.random.default_rng(seed)
  photos = dict(zip(CLASSES, load_sample_images().images))
  files: Dict[str, Image.Image] = {}
  for name, photo in photos.items():
    crops = iter(_crops(photo, rng, train_per_class + eval_per_class))
    for split, count in (('train', train_per_class), ('validation', eval_per_class)):
      for i in range(count):
        files[f'{split}/{name}/{name}_{i:03d}.jpg'] = next(crops)
  planted: Dict[str, str] = {}
  # Mislabeled: two temple photos filed under flower/, two flower photos under china/.
  for source, target in (('train/china/china_000.jpg', 'train/flower/china_000.jpg'),
                         ('train/china/china_001.jpg', 'train/flower/china_001.jpg'),
                         ('train/flower/flower_000.jpg', 'train/china/flower_000.jpg'),
                         ('train/flower/flower_001.jpg', 'train/china/flower_001.jpg')):
    files[target] = files.pop(source)
    planted[target] = 'label_issue'
  # Leak: an eval photo, resized and re-encoded, in train.
  leaked = files['validation/flower/flower_003.jpg']
  files['train/flower/flower_copy.jpg'] = Image.open(io.BytesIO(_jpeg(leaked.resize((80, 80)),
                                                                      quality=70)))
  planted['validation/flower/flower_003.jpg'] = 'leak'
  # A black frame and a blurred copy.
  files['train/china/black_frame.jpg'] = Image.new('RGB', (96, 96))
  planted['train/china/black_frame.jpg'] = 'dark'
  files['train/china/blurred.jpg'] = files['train/china/china_005.jpg'].filter(
      ImageFilter.GaussianBlur(4))
  planted['train/china/blurred.jpg'] = 'blurry'
  involved = {*planted, 'train/flower/flower_copy.jpg', 'train/china/china_005.jpg'}
  for relative, image in files.items():
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
      f.write(_jpeg(image))
  return planted, involved
