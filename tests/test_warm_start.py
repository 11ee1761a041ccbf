"""Warm start: the head starts from the blessed model's head on the same classes only."""

import numpy as np
import pytest

from contract.settings import TrainingConfig
from tests import tiny_model
from trainer import warm_start


def _head_weights(model):
  return model.get_layer('head').get_weights()


def _same(a, b):
  return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_same_classes_start_from_the_blessed_head(tmp_path):
  blessed = tiny_model.export_tiny_model(str(tmp_path))  # seed 0, cats/dogs
  expected = _head_weights(tiny_model.tiny_model(2, seed=0))
  model = tiny_model.tiny_model(2, seed=1)
  assert not _same(_head_weights(model), expected)
  decision = warm_start.warm_start(model, model.get_layer('head'), ['cats', 'dogs'], blessed, True)
  assert decision.used, decision.reason
  assert _same(_head_weights(model), expected)
  warm_start.write_decision(decision, str(tmp_path))
  assert warm_start.read_decision(str(tmp_path)) == decision
  assert decision.line().startswith('Warm start:')


def test_other_classes_train_from_scratch_and_say_why(tmp_path):
  blessed = tiny_model.export_tiny_model(str(tmp_path))
  model = tiny_model.tiny_model(3, seed=1)
  before = _head_weights(model)
  decision = warm_start.warm_start(model, model.get_layer('head'), ['cats', 'dogs', 'owls'],
                                   blessed, True)
  assert not decision.used and 'added owls' in decision.reason
  assert decision.line().startswith('Trained from scratch:')
  assert _same(_head_weights(model), before)
  renamed = warm_start.warm_start(model, model.get_layer('head'), ['cats', 'wolves'], blessed,
                                  True)
  assert not renamed.used and 'added wolves; removed dogs' in renamed.reason


def test_a_head_of_another_shape_trains_from_scratch(tmp_path):
  blessed = tiny_model.export_tiny_model(str(tmp_path))
  model = tiny_model.tiny_model(2, image_size=90, seed=1)  # another feature map size
  before = _head_weights(model)
  decision = warm_start.warm_start(model, model.get_layer('head'), ['cats', 'dogs'], blessed, True)
  assert not decision.used and 'do not fit' in decision.reason
  assert _same(_head_weights(model), before)


def test_off_or_no_blessed_model(tmp_path):
  model = tiny_model.tiny_model(2)
  head = model.get_layer('head')
  assert 'warm_start is false' in warm_start.warm_start(model, head, ['a', 'b'], '/x', False).reason
  assert 'no blessed model' in warm_start.warm_start(model, head, ['a', 'b'], None, True).reason


def test_a_warm_started_head_trains_fewer_epochs_at_a_tenth_of_the_rate():
  training = TrainingConfig(epochs=20, warm_start_epochs=5, learning_rate=1e-4)
  used, not_used = warm_start.WarmStart(True, 'same classes'), warm_start.WarmStart(False, 'none')
  warm = warm_start.training_settings(used, training)
  assert (warm.epochs, warm.learning_rate) == (5, pytest.approx(1e-5))
  assert warm_start.training_settings(not_used, training) == training
  short = TrainingConfig(epochs=3, warm_start_epochs=5)
  assert warm_start.training_settings(used, short).epochs == 3
