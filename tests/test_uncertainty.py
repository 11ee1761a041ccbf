"""What to label next: uncertainty scores, and the ranked list `predict --rank-uncertain`
writes beside its predictions."""

import csv
import io
import os

import numpy as np
import pytest

from components.inference import prediction_table, uncertainty
from tools import cli
from tests.tiny_model import CLASS_NAMES, export_tiny_model


def test_margin_and_entropy():
  p = [[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.6, 0.3, 0.1], [1 / 3, 1 / 3, 1 / 3]]
  np.testing.assert_allclose(uncertainty.uncertainty(p, 'margin'), [1.0, 0.0, 0.7, 1.0])
  entropy = uncertainty.uncertainty(p, 'entropy')
  np.testing.assert_allclose(entropy[[1, 3]], [0.0, 1.0], atol=1e-12)
  assert entropy[0] == pytest.approx(np.log(2) / np.log(3))
  with pytest.raises(ValueError, match='margin or entropy'):
    uncertainty.uncertainty(p, 'random')


def test_ranking_is_most_uncertain_first_with_both_classes_named():
  out = io.StringIO()
  rows = [('b.png', [0.9, 0.1, 0.0]), ('a.png', [0.2, 0.3, 0.5]), ('c.png', [0.2, 0.3, 0.5])]
  assert uncertainty.write_ranking(out, rows, ['x', 'y', 'z']) == 3
  ranked = list(csv.DictReader(io.StringIO(out.getvalue())))
  assert [r['path'] for r in ranked] == ['a.png', 'c.png', 'b.png']  # ties by path
  assert [r['rank'] for r in ranked] == ['1', '2', '3']
  assert (ranked[0]['predicted'], ranked[0]['runner_up']) == ('z', 'y')
  assert float(ranked[0]['uncertainty']) == pytest.approx(0.8)
  assert float(ranked[2]['probability']) == pytest.approx(0.9)


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory) -> str:
  return export_tiny_model(str(tmp_path_factory.mktemp('model')), CLASS_NAMES)


def test_predict_writes_the_ranking_beside_the_predictions(model_dir, class_folder, tmp_path,
                                                           capsys):
  (class_folder / 'cats' / 'broken.png').write_bytes(b'not an image')
  output, ranking = tmp_path / 'predictions.csv', tmp_path / 'next.csv'
  assert cli.main(['predict', '--model', model_dir, str(class_folder), '--output', str(output),
                   '--rank-uncertain', str(ranking), '--uncertainty', 'entropy']) == 0
  assert f'Most uncertain first (entropy): {ranking}' in capsys.readouterr().err
  predicted = {r['path']: r for r in prediction_table.read_rows(str(output))
               if 'skipped' not in r}
  with open(ranking, newline='') as f:
    ranked = list(csv.DictReader(f))
  assert sorted(r['path'] for r in ranked) == sorted(predicted)  # the skipped file is not
  scores = [float(r['uncertainty']) for r in ranked]
  assert scores == sorted(scores, reverse=True)
  for row in ranked:
    probabilities = list(predicted[row['path']]['probabilities'].values())
    assert float(row['uncertainty']) == pytest.approx(
        uncertainty.uncertainty([probabilities], 'entropy')[0], abs=1e-5)
    assert row['predicted'] == predicted[row['path']]['class_name']


def test_predict_refuses_a_bad_ranking_name(model_dir, class_folder, tmp_path, capsys):
  assert cli.main(['predict', '--model', model_dir, str(class_folder),
                   '--rank-uncertain', str(tmp_path / 'next.txt')]) == 2
  assert 'expected a .csv file name' in capsys.readouterr().err
  assert cli.main(['predict', '--model', model_dir, str(class_folder),
                   '--rank-uncertain', str(tmp_path / 'missing' / 'next.csv')]) == 2
  assert 'does not exist' in capsys.readouterr().err
