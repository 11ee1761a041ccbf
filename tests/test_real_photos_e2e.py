"""The whole pipeline on a folder of real photos as people have them: reached through a
symlink, with Mac and Windows sidecar files, phone photos tagged with EXIF orientations
3, 6 and 8, and 30-megapixel shots in both splits. It must train, evaluate and push with
no image counted as bad, and serve EXIF-tagged bytes as the upright picture."""

import glob
import io
import os

import numpy as np
import pytest
import tensorflow as tf

from components.example_gen import ingest_summary
from components.inference import prediction_table
from pipeline import local_runner
from pipeline.configs import load_config
from tests import real_photos
from tools import batch_predict, run_summary
from tools.class_folder import load_class_folder
from tools.model_dir import resolve_model_dir
from trainer.model import write_calibrated_weights

pytestmark = pytest.mark.slow
IMAGE_SIZE = 75
BIG_PER_CLASS = 2  # IMG_0000 in validation/, IMG_0001 in train/


@pytest.fixture(scope='module')
def photo_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('photos')
  real = tmp / 'mnt' / 'pets'
  real_photos.write_photo_folder(str(real), per_class=12, big_per_class=BIG_PER_CLASS,
                                 presplit=True)
  data = tmp / 'data'
  data.symlink_to(real, target_is_directory=True)
  weights = str(tmp / 'calibrated_notop.h5')
  write_calibrated_weights(weights, load_class_folder(str(real / 'train'), IMAGE_SIZE,
                                                      per_class=6).images)
  config = load_config(overrides={
      'data.path': str(data), 'output': str(tmp / 'run'), 'model.weights': weights,
      'model.image_size': IMAGE_SIZE, 'training.epochs': 2, 'training.augment': False,
      'evaluation.min_accuracy': 0.0, 'data.max_skipped_fraction': 0.0,
      'data.max_side_multiple': 3})  # stored up to 225 px: only the 30 MP shots downscaled
  local_runner.run(config)
  return config, run_summary.latest_run_summary(config)


def test_trains_evaluates_and_pushes_with_no_bad_image(photo_run):
  config, summary = photo_run
  for component in ('ImageFolderExampleGen', 'Transform', 'Trainer', 'Evaluator', 'AtomicPusher'):
    assert summary.executions.get(component) == 'COMPLETE', summary.executions
  assert summary.blessed, summary.failures
  assert os.listdir(config.serving_model_dir)
  (examples_dir,) = glob.glob(os.path.join(config.pipeline_root, 'ImageFolderExampleGen',
                                            'examples', '*'))
  ingested = ingest_summary.load_summary(examples_dir)
  assert ingested.total_skipped == 0, ingested.skipped_files
  assert ingested.downscaled == 2 * BIG_PER_CLASS
  assert ingested.total_ignored == 2 * (2 * 12 + 2 * 3)  # 2 per photo, 3 per folder


def test_served_exif_bytes_match_the_upright_picture(photo_run):
  """Served probabilities of sideways-stored, EXIF-tagged bytes differ from the upright
  file's by no more than JPEG re-encoding noise does (the same picture saved at another
  quality), while the same sideways pixels without the tag differ clearly."""
  config, _ = photo_run
  signature = tf.saved_model.load(resolve_model_dir(config.serving_model_dir)).signatures[
      'serving_image_bytes']

  def served(images):
    return signature(image_bytes=tf.constant(images))['probabilities'].numpy()

  photo = real_photos.sample_photos()['china']
  # Sides that are multiples of 16: the sideways copy's JPEG blocks are the upright one's
  # turned, so the two files differ by rounding only, not by new compression artifacts.
  upright = [real_photos.crop(photo, 100 + i, size=(192, 144)) for i in range(6)]
  reference = served([real_photos.jpeg(u) for u in upright])
  noise = np.abs(served([real_photos.jpeg(u, quality=85) for u in upright]) - reference).max()
  for orientation in range(2, 9):
    tagged = served([real_photos.jpeg(u, orientation) for u in upright])
    assert np.abs(tagged - reference).max() <= max(noise, 1e-3), (orientation, noise)
  untagged = served([real_photos.strip_exif(real_photos.jpeg(u, 6)) for u in upright])
  assert np.abs(untagged - reference).max() > 2 * noise


def test_predict_classifies_every_photo_through_the_symlink(photo_run):
  config, _ = photo_run
  classifier = batch_predict.load_classifier(config.serving_model_dir)
  writer = prediction_table.PredictionWriter(io.StringIO(), classifier.class_names)
  summary = batch_predict.predict_files(classifier, [config.data.path], writer)
  assert sum(summary.predicted.values()) == 2 * 12, summary.skipped
  assert set(summary.skipped) == {'hidden file', 'not an image file extension'}
