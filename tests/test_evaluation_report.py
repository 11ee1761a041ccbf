"""The evaluation report's rendering, with synthetic inputs (no pipeline run)."""

import base64
import io
import json
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components.report import evaluation_report, report_html, tfma_results
from components.report.report_html import Decision, Prediction
from tests.conftest import encode_image, random_pixels
from trainer import augment, eval_predictions, plots
from trainer.preprocessing import decode_and_resize, pixels_to_bytes

CLASSES = ['cats', 'dogs', 'birds']
METRICS = {'label:1': {'sparse_categorical_accuracy': 0.5, 'example_count': 2.0},
           'Overall': {'sparse_categorical_accuracy': 0.6, 'example_count': 5.0}}


def _predictions():
  rows = [('a.png', 0, 0, 0.9), ('b.png', 0, 1, 0.7), ('c.png', 1, 1, 0.8),
          ('d.png', 1, 2, 0.95), ('e.png', 2, 2, 0.6)]
  return [Prediction(f, label, pred, conf, encode_image(random_pixels((30, 40, 3), seed=i)))
          for i, (f, label, pred, conf) in enumerate(rows)]


def _decision(blessed=False):
  return Decision(blessed=blessed, thresholds=['SparseCategoricalAccuracy must be >= 0.7'],
                  failures=[] if blessed else ['Overall: sparse_categorical_accuracy = 0.6000, '
                                               'but must be >= 0.7'],
                  baseline=None)


def _pngs(page):
  return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_confusion_matrix_counts_and_accuracy():
  predictions = _predictions()
  matrix = report_html.confusion_matrix([p.label for p in predictions],
                                        [p.predicted for p in predictions], 3)
  np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 1], [0, 0, 1]])
  assert matrix.sum() == len(predictions)
  assert report_html.accuracy(matrix) == pytest.approx(3 / 5)
  # An id beyond the class count grows the matrix instead of failing.
  assert report_html.confusion_matrix([0, 3], [0, 0], 2).shape == (4, 4)
  assert np.isnan(report_html.accuracy(np.zeros((2, 2), dtype=int)))


def test_misclassified_ranked_by_confidence():
  ranked = report_html.rank_misclassified(_predictions())
  assert [p.filename for p in ranked] == ['d.png', 'b.png']
  assert all(not p.correct for p in ranked)
  assert report_html.rank_misclassified([p for p in _predictions() if p.correct]) == []


def test_report_json_is_consistent():
  predictions = _predictions()
  matrix = report_html.confusion_matrix([p.label for p in predictions],
                                        [p.predicted for p in predictions], 3)
  wrong = report_html.rank_misclassified(predictions)
  data = json.loads(json.dumps(report_html.report_json(matrix, CLASSES, wrong, 1, _decision(),
                                                       METRICS)))
  assert data['example_count'] == 5 and data['accuracy'] == pytest.approx(0.6)
  assert data['confusion_matrix'] == matrix.tolist()
  assert data['misclassified'][0] == {'filename': 'd.png', 'true': 'dogs', 'pred': 'birds',
                                      'true_id': 1, 'pred_id': 2, 'confidence': 0.95}
  assert data['grid'] == data['misclassified'][:1]
  assert data['blessed'] is False and data['failures']
  assert len(data['misclassified']) == data['example_count'] - np.trace(matrix)


def test_html_has_tables_images_and_decision():
  predictions = _predictions()
  matrix = report_html.confusion_matrix([p.label for p in predictions],
                                        [p.predicted for p in predictions], 3)
  curves = encode_image(random_pixels((20, 30, 3), seed=9))
  page = report_html.render_html('Report <x>', _decision(), METRICS, matrix, CLASSES,
                                 report_html.rank_misclassified(predictions), 16, curves)
  assert page.startswith('<!DOCTYPE html>') and '<table>' in page
  assert 'Report &lt;x&gt;' in page  # escaped
  assert 'Blessed: no' in page and 'must be &gt;= 0.7' in page
  assert 'label:1 (dogs)' in page
  assert '2 misclassified' in page and 'd.png' in page
  images = _pngs(page)
  assert len(images) == 3  # confusion matrix, curves, misclassified grid
  for png in images:
    assert Image.open(io.BytesIO(png)).format == 'PNG'
  assert images[1] == curves
  # Overall row first.
  assert page.index('<td>Overall</td>') < page.index('label:1 (dogs)')


def test_html_without_mistakes_or_history():
  predictions = [p for p in _predictions() if p.correct]
  matrix = report_html.confusion_matrix([p.label for p in predictions],
                                        [p.predicted for p in predictions], 3)
  page = report_html.render_html('R', _decision(blessed=True), METRICS, matrix, CLASSES, [],
                                 16, None)
  assert 'No misclassified images' in page and 'Blessed: yes' in page
  assert 'No training history found' in page
  assert len(_pngs(page)) == 1


def test_curves_are_the_trainers_png_else_drawn_from_its_history(tmp_path):
  history = {'accuracy': [0.5, 0.7], 'val_accuracy': [0.4, 0.6],
             'loss': [1.0, 0.6], 'val_loss': [1.1, 0.8]}
  (tmp_path / 'history.json').write_text(json.dumps(history))
  drawn = evaluation_report.training_curves(str(tmp_path))
  assert Image.open(io.BytesIO(drawn)).size == (1100, 400)
  plots.save_training_curves(history, str(tmp_path / 'training_curves.png'))
  assert evaluation_report.training_curves(str(tmp_path)) == (
      tmp_path / 'training_curves.png').read_bytes()
  (tmp_path / 'training_curves.png').unlink()
  (tmp_path / 'history.json').write_text(json.dumps({'note': 'no numbers'}))
  assert evaluation_report.training_curves(str(tmp_path)) is None


def test_grid_survives_unreadable_images():
  bad = Prediction('x.bin', 0, 1, 0.99, b'not an image')
  png = report_html.misclassified_grid_png([bad, *report_html.rank_misclassified(
      _predictions())], CLASSES)
  assert Image.open(io.BytesIO(png)).size[0] > 100


# pylint: disable=g-import-not-at-top,protected-access
def test_threshold_and_failure_texts():
  """TFMA's thresholds and failures in words (imports TFX and TFMA: slower)."""
  from pipeline.configs import load_config
  from pipeline.definition import eval_config
  from tensorflow_model_analysis.proto import validation_result_pb2
  config = load_config(overrides={'data.path': 'unused', 'evaluation.min_accuracy': 0.8})
  texts = tfma_results.checked_thresholds(eval_config(config))
  assert texts[0] == 'SparseCategoricalAccuracy, overall: must be >= 0.8'
  assert texts[1] == ('SparseCategoricalAccuracy, overall: must not drop by more than 0 '
                      'vs the baseline')
  failure = validation_result_pb2.ValidationFailure()
  failure.metric_key.name = 'sparse_categorical_accuracy'
  failure.metric_value.double_value.value = 0.75
  failure.metric_threshold.value_threshold.lower_bound.value = 0.8
  slice_key = validation_result_pb2.MetricsValidationForSlice().slice_key
  assert tfma_results._failure_text(slice_key, failure) == (
      'Overall: sparse_categorical_accuracy = 0.7500, but must be >= 0.8 '
      '(evaluation.min_accuracy)')
  failure.metric_key.is_diff = True
  failure.metric_value.double_value.value = -0.05
  failure.metric_threshold.Clear()
  failure.metric_threshold.change_threshold.absolute.value = -1e-10
  assert 'changed by -0.0500 vs the baseline' in tfma_results._failure_text(
      slice_key, failure)


def test_only_the_most_confident_mistakes_keep_their_image():
  from components.report import evaluation_report
  kept, mistakes = [], [Prediction(f'{i}.png', 0, 1, c) for i, c in
                        enumerate([0.6, 0.9, 0.7, 0.95, 0.65])]
  for p in mistakes:
    evaluation_report._keep_image(kept, p, b'img', 2)
  assert sorted(p.filename for p in mistakes if p.image) == ['1.png', '3.png']
  top = report_html.rank_misclassified(mistakes)[:2]
  assert all(p.image for p in top)


def test_ties_keep_the_images_of_the_grid_order():
  """Saturated probabilities tie often: the kept images are those the grid shows."""
  from components.report import evaluation_report
  kept, mistakes = [], [Prediction(f'{name}.png', 0, 1, 1.0) for name in 'dbeac']
  for p in mistakes:
    evaluation_report._keep_image(kept, p, b'img', 3)
  top = report_html.rank_misclassified(mistakes)[:3]
  assert [p.filename for p in top] == ['a.png', 'b.png', 'c.png']
  assert sorted(p.filename for p in mistakes if p.image) == ['a.png', 'b.png', 'c.png']


def test_class_names_with_dollar_signs_render_literally():
  """Folder names such as `$x$` or `$\\frac$` are drawn as typed, not parsed as math
  text (`$\\frac$` is not valid math: parsing it would fail the report)."""
  names = ['$x$', r'$\frac$', 'a_{b}^$']
  predictions = [Prediction(f'{i}.png', i, (i + 1) % 3, 0.9,
                            encode_image(random_pixels((20, 20, 3), seed=i))) for i in range(3)]
  matrix = report_html.confusion_matrix([p.label for p in predictions],
                                        [p.predicted for p in predictions], 3)
  for png in (report_html.confusion_matrix_png(matrix, names),
              report_html.misclassified_grid_png(predictions, names)):
    assert Image.open(io.BytesIO(png)).size[0] > 100


def test_confusion_matrix_from_tfma_plot_entries():
  # TFMA's JSON omits zero-valued ids; a class with no example still gets a row.
  entries = [{'numWeightedExamples': 3.0}, {'predictedClassId': 1, 'numWeightedExamples': 2.0},
             {'actualClassId': 1, 'predictedClassId': 1, 'numWeightedExamples': 4.0}]
  np.testing.assert_array_equal(tfma_results._matrix_from_entries(entries, 3),
                                [[3, 2, 0], [0, 4, 0], [0, 0, 0]])


def _raw_eval_file(path, count=5):
  """Raw eval examples (encoded PNG, label, filename), as ExampleGen writes them."""
  images = [encode_image(random_pixels((30 + i, 40, 3), seed=i)) for i in range(count)]
  with tf.io.TFRecordWriter(str(path)) as writer:
    for i, image in enumerate(images):
      writer.write(tf.train.Example(features=tf.train.Features(feature={
          'image': tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
          'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2])),
          'filename': tf.train.Feature(bytes_list=tf.train.BytesList(value=[f'{i}.png'.encode()])),
      })).SerializeToString())
  return images


def test_trainer_predictions_are_matched_to_raw_examples_by_image_key(tmp_path):
  images = _raw_eval_file(tmp_path / 'eval.tfrecord')
  keys = augment.image_keys(pixels_to_bytes(decode_and_resize(tf.constant(images), 75))).numpy()
  # What the Trainer would write, in another order: examples 1 and 2 misclassified.
  confidences = {0: (0, 0.9), 1: (0, 0.8), 2: (1, 0.95), 3: (1, 0.7), 4: (0, 0.6)}
  saved = eval_predictions.EvalPredictions(75, {
      int(keys[i]): (i % 2, np.array([c, 1 - c]) if top == 0 else np.array([1 - c, c]))
      for i, (top, c) in reversed(list(confidences.items()))})
  eval_predictions.write(saved, str(tmp_path))
  loaded = eval_predictions.load(str(tmp_path))
  predictions, num_classes = evaluation_report.match_trainer_predictions(
      loaded, [str(tmp_path / 'eval.tfrecord')], batch_size=2, keep_images=1)
  assert num_classes == 2
  assert [(p.filename, p.label, p.predicted) for p in predictions] == [
      ('0.png', 0, 0), ('1.png', 1, 0), ('2.png', 0, 1), ('3.png', 1, 1), ('4.png', 0, 0)]
  assert [p.confidence for p in predictions] == pytest.approx([0.9, 0.8, 0.95, 0.7, 0.6])
  ranked = report_html.rank_misclassified(predictions)
  assert [p.filename for p in ranked] == ['2.png', '1.png']
  assert ranked[0].image == images[2] and ranked[1].image is None  # keep_images=1
  del saved.by_key[int(keys[3])]
  with pytest.raises(ValueError, match="no prediction for eval example '3.png'"):
    evaluation_report.match_trainer_predictions(saved, [str(tmp_path / 'eval.tfrecord')], 2, 1)


def test_html_with_no_grid_an_unused_baseline_and_an_unchanged_push():
  """report_misclassified: 0 shows no grid; the decision says why the last blessed model
  was not the baseline and that an identical model is already serving."""
  predictions = _predictions()
  matrix = report_html.confusion_matrix([p.label for p in predictions],
                                        [p.predicted for p in predictions], 3)
  decision = _decision(blessed=True)
  decision.baseline_not_used = "classes changed from ['cats', 'dogs'] to ['birds', 'cats', 'dogs']"
  decision.unchanged_as = '/serving/m/17'
  page = report_html.render_html('R', decision, METRICS, matrix, CLASSES,
                                 report_html.rank_misclassified(predictions), 0, None)
  assert '2 misclassified (none shown)' in page and len(_pngs(page)) == 1
  assert ('Baseline model: not used: classes changed from [&#x27;cats&#x27;, &#x27;dogs&#x27;] '
          'to [&#x27;birds&#x27;') in page
  assert 'Unchanged, nothing pushed: /serving/m/17 holds the same model.' in page
  data = report_html.report_json(matrix, CLASSES, [], 0, decision, METRICS)
  assert data['baseline_not_used'] == decision.baseline_not_used
  assert data['unchanged_as'] == '/serving/m/17'
