"""`transfer-pipeline predict` on folders: batches, streamed CSV/JSONL rows, skip reasons.

The model is `tests.tiny_model`'s (exported as `run_fn` does, tiny backbone); every
row is checked against the model's `serving_image_bytes` signature called per image.
"""

import io
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from components.inference import prediction_table
from tools import batch_predict, cli, predict
from tests.cli_process import run_cli
from tests.conftest import encode_image, random_pixels
from tests.tiny_model import CLASS_NAMES, export_tiny_model

BAD_FILES = {  # name -> (content, reason), as ingestion's quarantine says
    'cats/notes.jpg': (b'just text', 'not a readable image'),
    'dogs/empty.png': (b'', 'empty file'),
    'dogs/.DS_Store': (b'x', 'hidden file'),
    'dogs/readme.txt': (b'x', 'not an image file extension'),
}


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory) -> str:
  return export_tiny_model(str(tmp_path_factory.mktemp('model')), CLASS_NAMES)


@pytest.fixture
def folder(class_folder):
  """conftest's 21 images (12 cats/ PNG, 9 dogs/ JPEG), a nested one and four bad files."""
  (class_folder / 'dogs' / 'puppies').mkdir()
  (class_folder / 'dogs' / 'puppies' / 'p.png').write_bytes(
      encode_image(random_pixels((30, 30, 3), seed=99)))
  for name, (content, _) in BAD_FILES.items():
    (class_folder / name).write_bytes(content)
  return class_folder


def _all_files(root):
  return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


def _per_image(model_dir, paths):
  """The signature called on one image at a time (the old predict path)."""
  return {row['path']: row for row in predict.predict_files(model_dir, paths)}


def test_csv_rows_match_the_model_image_by_image(model_dir, folder, tmp_path):
  output = tmp_path / 'predictions.csv'
  classifier = batch_predict.load_classifier(os.path.dirname(model_dir) + '/model')
  assert classifier.class_names == CLASS_NAMES  # from the exported class_names.txt
  with open(output, 'w', newline='') as out:
    summary = batch_predict.predict_files(
        classifier, [str(folder)], prediction_table.PredictionWriter(out, CLASS_NAMES),
        batch_size=4)  # 22 images: five full batches and a partial one
  assert output.read_text().splitlines()[0] == 'path,class_name,cats,dogs,skipped'
  rows = {row['path']: row for row in prediction_table.read_rows(str(output))}
  assert sorted(rows) == _all_files(folder)  # every file once, none lost
  skipped = {os.path.relpath(p, folder): r['skipped'] for p, r in rows.items() if 'skipped' in r}
  assert skipped == {name: reason for name, (_, reason) in BAD_FILES.items()}
  images = [p for p, r in rows.items() if 'skipped' not in r]
  assert len(images) == summary.images == 22
  expected = _per_image(model_dir, images)
  for path in images:
    probabilities = list(rows[path]['probabilities'].values())
    np.testing.assert_allclose(probabilities, expected[path]['probabilities'], atol=1e-5)
    assert rows[path]['class_name'] == expected[path]['class_name']
  assert sum(summary.predicted.values()) == 22
  assert dict(summary.predicted) == {
      name: sum(r.get('class_name') == name for r in rows.values()) for name in CLASS_NAMES
      if any(r.get('class_name') == name for r in rows.values())}
  assert sum(summary.skipped.values()) == len(BAD_FILES)


def test_cli_writes_jsonl_for_named_files(model_dir, folder, tmp_path, capsys):
  output = tmp_path / 'p.jsonl'
  cat = str(folder / 'cats' / 'cats_0.png')
  text = str(folder / 'dogs' / 'readme.txt')
  assert cli.main(['predict', '--model', os.path.dirname(model_dir) + '/model', cat, text,
                   '--output', str(output), '--batch-size', '2']) == 0
  rows = prediction_table.read_rows(str(output))
  assert [r['path'] for r in rows] == [cat, text]
  assert rows[1] == {'path': text, 'skipped': 'not an image file extension'}
  assert set(rows[0]['probabilities']) == set(CLASS_NAMES)
  assert sum(rows[0]['probabilities'].values()) == pytest.approx(1.0, abs=1e-5)
  err = capsys.readouterr().err
  assert 'Classified 1 image, skipped 1 file in ' in err
  assert 'skipped, not an image file extension: 1' in err
  assert f'Predictions: {output}' in err


def test_a_missing_named_file_is_refused_before_anything_is_written(model_dir, folder, tmp_path,
                                                                      capsys):
  output = tmp_path / 'p.csv'
  missing = str(folder / 'cats' / 'missing.png')
  assert cli.main(['predict', '--model', model_dir, str(folder), missing,
                   '--output', str(output)]) == 2
  assert capsys.readouterr().err == f'error: {missing} does not exist.\n'
  assert not output.exists()


def test_nothing_classified_exits_non_zero_after_the_summary(model_dir, tmp_path, capsys):
  (tmp_path / 'in').mkdir()
  (tmp_path / 'in' / 'notes.txt').write_text('x')
  (tmp_path / 'in' / 'empty.jpg').write_bytes(b'')
  assert cli.main(['predict', '--model', model_dir, str(tmp_path / 'in')]) == 2
  err = capsys.readouterr().err.splitlines()
  assert err[1].startswith('Classified 0 images, skipped 2 files in ')
  assert err[-1] == ('error: No image could be classified (2 files skipped; '
                     'empty file: 1, not an image file extension: 1).')


def test_a_run_folder_as_model_a_quiet_start_and_one_summary(model_dir, folder, tmp_path):
  """As a script sees it (child process, stdout and stderr apart): the run's output folder
  stands for its serving_model/<name>, TensorFlow's start-up lines stay off stderr, and
  the summary is said once."""
  version = tmp_path / 'run' / 'serving_model' / 'image_classifier' / '3'
  shutil.copytree(model_dir, version)
  result = run_cli(['predict', '--model', str(tmp_path / 'run'), str(folder)],
                   str(tmp_path / 'bin'), TF_USE_LEGACY_KERAS='1')
  assert result.returncode == 0, result.stderr
  summary = [line for line in result.stderr.splitlines() if not line.startswith('  ')]
  assert summary[0] == f'Model: {version} (classes: cats, dogs)'
  assert len(summary) == 2 and summary[1].startswith(
      f'Classified 22 images, skipped {len(BAD_FILES)} files in '), result.stderr
  for noise in ('cuFFT', 'cuDNN', 'TF-TRT', 'FutureWarning', 'predict:'):
    assert noise not in result.stderr
  assert result.stdout.splitlines()[0] == 'path,class_name,cats,dogs,skipped'
  assert len(result.stdout.splitlines()) == 1 + 22 + len(BAD_FILES) + 1  # + the stub's line


def test_cli_refuses_a_bad_output_name(model_dir, folder, tmp_path, capsys):
  assert cli.main(['predict', '--model', model_dir, str(folder),
                   '--output', str(tmp_path / 'p.txt')]) == 2
  assert 'expected a .csv or .jsonl' in capsys.readouterr().err


class _FailsOnMarker:
  """Stands in for a model whose batch call fails when one image cannot be decoded."""
  class_names = ['a', 'b']

  def __init__(self):
    self.calls = []

  def __call__(self, images):
    self.calls.append(len(images))
    if b'bad' in images:
      raise tf.errors.InvalidArgumentError(None, None, 'Unknown image file format')
    return np.tile([[0.25, 0.75]], (len(images), 1))


def test_a_failing_batch_is_retried_image_by_image(monkeypatch):
  from components.example_gen import image_walk  # pylint: disable=g-import-not-at-top
  files = [image_walk.ImageFile(f'{i}.png', image=b'bad' if i == 2 else b'ok') for i in range(4)]
  monkeypatch.setattr(batch_predict, 'walk_images', lambda inputs, max_pixels, max_side=0: iter(files))
  out, classifier = io.StringIO(), _FailsOnMarker()
  summary = batch_predict.predict_files(
      classifier, ['unused'], prediction_table.PredictionWriter(out, ['a', 'b']), batch_size=4)
  assert classifier.calls == [4, 1, 1, 1, 1]
  assert summary.predicted == {'b': 3} and summary.skipped == {'not a decodable image': 1}
  assert out.getvalue().splitlines()[3] == '2.png,,,,not a decodable image'
