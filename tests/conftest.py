"""Shared fixtures. TFX 1.16 needs Keras 2, selected before TensorFlow is imported."""

import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
import hashlib
import io

import numpy as np
import pytest
from PIL import Image


def encode_image(array: np.ndarray, image_format: str = 'PNG', **save_args) -> bytes:
  out = io.BytesIO()
  Image.fromarray(array).save(out, format=image_format, **save_args)
  return out.getvalue()


def tree_digest(folder) -> str:
  """sha256 over every file name and content under `folder`."""
  digest = hashlib.sha256()
  for root, _, files in sorted(os.walk(folder)):
    for name in sorted(files):
      digest.update(os.path.relpath(os.path.join(root, name), folder).encode())
      with open(os.path.join(root, name), 'rb') as f:
        digest.update(f.read())
  return digest.hexdigest()


def random_pixels(shape, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


@pytest.fixture
def class_folder(tmp_path):
  """Two classes of small PNG/JPEG images: cats/ (12) and dogs/ (9)."""
  root = tmp_path / 'images'
  for name, count, fmt in (('cats', 12, 'PNG'), ('dogs', 9, 'JPEG')):
    (root / name).mkdir(parents=True)
    for i in range(count):
      ext = 'png' if fmt == 'PNG' else 'jpg'
      (root / name / f'{name}_{i}.{ext}').write_bytes(
          encode_image(random_pixels((20, 24, 3), seed=i), fmt))
  return root



def compiled_classifier(num_classes: int, config, learning_rate: float = 1e-4):
  """The model `run_fn` assembles (frozen backbone + a fresh head), compiled."""
  from trainer import model as model_lib  # pylint: disable=g-import-not-at-top
  backbone = model_lib.build_backbone(config)
  head = model_lib.build_head(tuple(backbone.output.shape[1:]), num_classes, config)
  model = model_lib.assemble(backbone, head)
  model_lib.compile_model(model, num_classes, learning_rate)
  return model
