"""The Evaluator compares only with another blessed model of the same classes."""

import os

from tfx.types import standard_artifacts

from components.evaluator import baseline_check
from trainer.export import CLASS_NAMES_FILE


def _model(tmp_path, name, artifact_id, class_names):
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / name)
  model.id = artifact_id
  if class_names is not None:
    path = os.path.join(model.uri, 'Format-Serving', CLASS_NAMES_FILE)
    os.makedirs(os.path.dirname(path))
    with open(path, 'w') as f:
      f.write(''.join(f'{n}\n' for n in class_names))
  return model


def test_a_model_of_the_same_classes_is_a_baseline(tmp_path):
  old = _model(tmp_path, 'old', 1, ['cats', 'dogs'])
  new = _model(tmp_path, 'new', 2, ['cats', 'dogs'])
  assert baseline_check.model_classes(new) == ['cats', 'dogs']
  assert baseline_check.baseline_refusal(new, old) is None


def test_other_classes_are_refused_naming_both_vocabularies(tmp_path):
  old = _model(tmp_path, 'old', 1, ['cats', 'dogs'])
  for i, names in enumerate((['cats', 'dogs', 'gray'], ['cats', 'dogs', 'gray', 'sepia'],
                             ['cats', 'gray'])):
    new = _model(tmp_path, f'new{i}', 2 + i, names)
    assert baseline_check.baseline_refusal(new, old) == (
        f"classes changed from ['cats', 'dogs'] to {names}")


def test_the_candidate_itself_and_a_model_without_classes_are_refused(tmp_path):
  model = _model(tmp_path, 'model', 1, ['cats', 'dogs'])
  assert 'the candidate itself' in baseline_check.baseline_refusal(model, model)
  unknown = _model(tmp_path, 'unknown', 2, None)
  assert 'records no class names' in baseline_check.baseline_refusal(model, unknown)


def test_artifacts_without_ids_are_told_apart_by_uri(tmp_path):
  old = _model(tmp_path, 'old', 0, ['cats', 'dogs'])
  new = _model(tmp_path, 'new', 0, ['cats', 'dogs'])
  assert baseline_check.baseline_refusal(new, old) is None
