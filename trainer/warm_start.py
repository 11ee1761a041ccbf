"""Warm start: the head starts from the latest blessed model's head.

Only when that model was trained on the same classes, in the same order (its
`assets.extra/class_names.txt`), and its head has the same shape; otherwise training
starts from scratch and says why. The decision is written beside the training history
(`warm_start.json`) for the report.
"""

import dataclasses
import json
import logging
import os
from typing import List, Optional

import tensorflow as tf
import tf_keras as keras

from contract.settings import TrainingConfig
from trainer import export

DECISION_FILE = 'warm_start.json'
# A warm-started head trains at this fraction of the learning rate: RMSprop's steps are
# about the rate per weight whatever the gradient, and at the full rate they threw the
# demo spans' warm-started head from validation accuracy 1.0 down to 0.5-0.78 (2 of 4
# seeds); at a tenth its epochs stayed at 0.97-1.0 (ad hoc, stand-in weights).
WARM_START_RATE = 0.1


@dataclasses.dataclass(frozen=True)
class WarmStart:
  used: bool
  reason: str
  base_model: str = ''

  def line(self) -> str:
    return f'Warm start: {self.reason}' if self.used else f'Trained from scratch: {self.reason}'


def _class_change(old: List[str], new: List[str]) -> str:
  added = [c for c in new if c not in old]
  removed = [c for c in old if c not in new]
  parts = ([f'added {", ".join(added)}'] if added else []) + (
      [f'removed {", ".join(removed)}'] if removed else [])
  return '; '.join(parts) or f'the class order changed ({old} -> {new})'


def _load_head(model: keras.Model, head: keras.Model, base_model: str) -> Optional[str]:
  """Copies the exported model's head weights into `head`; the problem, or None."""
  # A copy of the candidate's structure reads the SavedModel's checkpoint: the same
  # object graph, so every variable lands where it belongs; only the head is kept.
  copy = keras.models.clone_model(model)
  try:
    copy.load_weights(os.path.join(base_model, 'variables', 'variables')).expect_partial()
  except (ValueError, tf.errors.OpError) as e:
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return f'its weights do not fit this model ({first_line[:200]})'
  head.set_weights(copy.get_layer(head.name).get_weights())
  return None


def warm_start(model: keras.Model, head: keras.Model, class_names: List[str],
               base_model: Optional[str], enabled: bool) -> WarmStart:
  """Starts `head` (part of `model`) from `base_model`'s head when it can; says what it did."""
  if not enabled:
    return WarmStart(False, 'training.warm_start is false.')
  if not base_model:
    return WarmStart(False, 'no blessed model trained on other data.')
  old = export.read_class_names(base_model)
  if old != list(class_names):
    return WarmStart(False, f'the classes changed since the blessed model ({_class_change(old, list(class_names))}).',
                     base_model)
  problem = _load_head(model, head, base_model)
  if problem:
    return WarmStart(False, f'the blessed model at {base_model}: {problem}.', base_model)
  return WarmStart(True, f'the head starts from the blessed model at {base_model} '
                         f'(same classes: {", ".join(class_names)}).', base_model)


def training_settings(decision: WarmStart, training: TrainingConfig) -> TrainingConfig:
  """`training` for a warm-started head: `training.warm_start_epochs` epochs (at most
  `training.epochs`) at `WARM_START_RATE` x `training.learning_rate`; unchanged when
  training starts from scratch."""
  if not decision.used:
    return training
  return dataclasses.replace(training, epochs=min(training.epochs, training.warm_start_epochs),
                             learning_rate=training.learning_rate * WARM_START_RATE)


def write_decision(decision: WarmStart, model_run_dir: str) -> None:
  with tf.io.gfile.GFile(os.path.join(model_run_dir, DECISION_FILE), 'w') as f:
    json.dump(dataclasses.asdict(decision), f, indent=2)


def read_decision(model_run_dir: str) -> Optional[WarmStart]:
  path = os.path.join(model_run_dir, DECISION_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return WarmStart(**json.load(f))


def log(decision: WarmStart) -> None:
  """A warning when a blessed model was there but could not be used; info otherwise."""
  level = logging.WARNING if decision.base_model and not decision.used else logging.INFO
  logging.log(level, decision.line())
