"""The trained model's eval-split predictions, written once by the Trainer.

The Trainer already holds the eval split's backbone features (the feature cache), so
the head's predictions on them cost a fraction of a second; the EvaluationReport
reads them instead of running the model over the eval split a third time (after the
Trainer's validation and the Evaluator). Each prediction is keyed by the image key of
its transformed pixels (`augment.image_keys`), which the report recomputes from the
raw examples with Transform's own decode-and-resize.
"""

import dataclasses
import json
import os
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

FILE_NAME = 'eval_predictions.json'


@dataclasses.dataclass
class EvalPredictions:
  image_size: int
  # image key -> (true label, class probabilities)
  by_key: Dict[int, Tuple[int, np.ndarray]]


def as_class_probabilities(outputs: np.ndarray) -> np.ndarray:
  """[B, 1] sigmoid outputs -> [B, 2]; softmax outputs unchanged."""
  outputs = np.asarray(outputs, dtype=np.float64)
  return np.concatenate([1.0 - outputs, outputs], axis=1) if outputs.shape[1] == 1 else outputs


def predict(model: Callable[[tf.Tensor], tf.Tensor], batches: tf.data.Dataset,
            keys: tf.data.Dataset, image_size: int) -> EvalPredictions:
  """`model` on (inputs, label) `batches`; `keys` yields the same examples' image keys
  ([B] batches) in the same order."""
  outputs, labels = [], []
  for inputs, label in batches:
    outputs.append(model(inputs, training=False).numpy())
    labels.append(label.numpy().reshape(-1))
  keys = np.concatenate([np.reshape(k.numpy(), [-1]) for k in keys])
  probabilities = as_class_probabilities(np.concatenate(outputs))
  labels = np.concatenate(labels).astype(int)
  if not len(keys) == len(labels):
    raise ValueError(f'{len(keys)} image keys for {len(labels)} eval predictions.')
  return EvalPredictions(image_size, {int(k): (int(y), p)
                                      for k, y, p in zip(keys, labels, probabilities)})


def write(predictions: EvalPredictions, model_run_dir: str) -> str:
  path = os.path.join(model_run_dir, FILE_NAME)
  rows = [[str(key), label, [round(float(p), 7) for p in probs]]
          for key, (label, probs) in predictions.by_key.items()]
  with tf.io.gfile.GFile(path, 'w') as f:
    json.dump({'image_size': predictions.image_size, 'key_label_probabilities': rows}, f)
  return path


def load(model_run_uri: str) -> Optional[EvalPredictions]:
  """What `write` wrote into the ModelRun artifact; None if it is not there."""
  path = os.path.join(model_run_uri, FILE_NAME)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    data = json.load(f)
  return EvalPredictions(int(data['image_size']),
                         {int(key): (int(label), np.asarray(probs))
                          for key, label, probs in data['key_label_probabilities']})
