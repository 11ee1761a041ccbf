"""The report's additions: Grad-CAM beside the misclassified images, and the data
insight section with thumbnails."""

import base64
import io
import re

import numpy as np
import tf_keras as keras
from PIL import Image

from components.insight.findings import Finding
from components.report import grad_cam, insight_section, report_html
from components.report.report_html import Decision, Prediction
from tests.conftest import encode_image, random_pixels
from tests.tiny_model import export_tiny_model
from trainer import model as model_lib

SIZE = 40


def _red_detector() -> keras.Model:
  """The exported model's layout with known weights: a 5x5-average 'backbone' (one channel
  per colour) and a head whose class 1 rises with the red channel (class 0 falls)."""
  image = keras.Input((SIZE, SIZE, 3), name='image')
  backbone = keras.layers.Conv2D(3, 5, strides=5, use_bias=False, name='backbone')
  features = keras.Input((SIZE // 5, SIZE // 5, 3))
  logits = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(features))
  head = keras.Model(features, keras.layers.Softmax()(logits), name='head')
  model = keras.Model(image, head(backbone(model_lib.inception_preprocess()(image))))
  backbone.set_weights([np.einsum('ij,kl->ijkl', np.ones((5, 5)), np.eye(3)) / 25])
  head.layers[2].set_weights([np.array([[-4.0, 4.0], [0, 0], [0, 0]]), np.zeros(2)])
  return model


def test_grad_cam_points_at_the_evidence_for_the_class():
  pixels = np.zeros((1, SIZE, SIZE, 3), np.float32)
  pixels[0, :10, :10, 0] = 255  # a red patch in the top-left corner
  red, rest = grad_cam.heatmaps(_red_detector(), np.repeat(pixels, 2, axis=0), [1, 0])
  assert red.shape == (SIZE // 5, SIZE // 5) and red.max() == 1.0
  assert red[:2, :2].min() == 1.0 and red[2:, 2:].max() == 0.0  # the red patch only
  assert rest[:2, :2].max() == 0.0 and rest[2:, 2:].min() > 0.5  # everywhere but


def test_overlays_from_an_exported_model(tmp_path):
  model_dir = export_tiny_model(str(tmp_path))
  images = [encode_image(random_pixels((30, 50, 3), i)) for i in range(3)]
  overlays = grad_cam.overlays_for(model_dir, images, [0, 1, 1])
  assert [o.shape for o in overlays] == [(75, 75, 3)] * 3
  assert all(o.dtype == np.uint8 for o in overlays)
  assert grad_cam.overlays_for(model_dir, [], []) is None


def _png_width(page: str, alt: str) -> int:
  data = re.search(rf'alt="{alt}" src="data:image/png;base64,([^"]+)"', page).group(1)
  return Image.open(io.BytesIO(base64.b64decode(data))).width


def test_misclassified_grid_shows_heatmaps_beside_images():
  wrong = [Prediction(f'{i}.png', 0, 1, 0.9, encode_image(random_pixels((30, 30, 3), i)))
           for i in range(2)]
  decision = Decision(True, [], [], None)
  args = ('t', decision, {}, np.eye(2, dtype=int), ['a', 'b'], wrong, 2, None)
  plain = report_html.render_html(*args)
  heatmaps = [random_pixels((75, 75, 3), i) for i in range(2)]
  with_cam = report_html.render_html(*args, heatmaps=heatmaps)
  assert 'Grad-CAM' in with_cam and 'Grad-CAM' not in plain
  alt = 'most confidently misclassified'
  assert _png_width(with_cam, alt) == 2 * _png_width(plain, alt)


def _thumbnail(seed: int) -> bytes:
  return encode_image(random_pixels((20, 20, 3), seed), 'JPEG')


def test_insight_section_pictures_suspects_beside_typical_images_and_pairs():
  findings = [Finding('label_issue', 'train/cats/d<1>.jpg', 'train', 'cats', 0.97, 'dogs'),
              Finding('leak', 'validation/dogs/x.jpg', 'eval', 'dogs', 1.0, '',
                      'train/dogs/x_copy.jpg', 'train'),
              Finding('dark', 'train/cats/black.jpg', 'train', 'cats', 1.0)]
  files = ['train/cats/d<1>.jpg', 'validation/dogs/x.jpg', 'train/dogs/x_copy.jpg',
           'train/cats/black.jpg', 'train/cats/c1.jpg', 'train/cats/c2.jpg',
           'train/dogs/g1.jpg']
  summary = {'num_images': 40, 'counts': {'label_issue': 1, 'leak': 1, 'dark': 1},
             'typical': {'cats': ['train/cats/c1.jpg', 'train/cats/c2.jpg'],
                         'dogs': ['train/dogs/g1.jpg']},
             'thumbnails': {f: f'thumbnails/{i}.jpg' for i, f in enumerate(files)}}
  stored = {f'thumbnails/{i}.jpg': _thumbnail(i) for i in range(len(files))}
  page = insight_section.section_html(summary, findings, stored.get, '/x/findings.csv')
  assert '1 label_issue, 1 leak, 1 dark' in page and '/x/findings.csv' in page
  assert page.count('data:image/jpeg;base64,') == 1 + 2 + 1 + 2 + 1  # suspect, cats, dogs
  assert 'd&lt;1&gt;.jpg' in page and 'd<1>' not in page  # file names escaped
  assert 'filed as cats, looks like dogs' in page
  assert 'validation/dogs/x.jpg (eval, dogs)' in page and 'train/dogs/x_copy.jpg (train)' in page
  for kind in ('label_issue', 'leak', 'dark'):
    assert insight_section.ADVICE[kind] in page
  assert 'outlier' not in page  # kinds without findings get no heading


def test_insight_section_without_thumbnails_still_lists_findings():
  findings = [Finding('blurry', 'train/a.jpg', 'train', 'a', 0.7)]
  summary = {'num_images': 3, 'counts': {'blurry': 1}}
  page = insight_section.section_html(summary, findings, lambda _: None, 'f.csv')
  assert 'train/a.jpg' in page and '(no thumbnail)' in page
