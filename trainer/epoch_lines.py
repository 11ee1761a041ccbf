"""Keras callback: one console line per epoch, e.g. `Epoch 2/20 - 3.1 s - loss 0.6933 - ... - lr 9.94e-05`.

Written to `console.out()` (the terminal during `transfer-pipeline run`, standard
output elsewhere), in place of Keras' own `verbose=2` lines, which go to the run log.
"""

import time

import tf_keras as keras

import console

INDENT = '  '


class EpochLines(keras.callbacks.Callback):
  """Writes the epoch number, its wall time and every metric Keras logged for it."""

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.monotonic()

  def on_epoch_end(self, epoch, logs=None):
    seconds = time.monotonic() - self._start
    metrics = ''.join(f' - {name} {_number(value)}' for name, value in (logs or {}).items())
    console.say(f'{INDENT}Epoch {epoch + 1}/{self.params["epochs"]} - {seconds:.1f} s{metrics}')


def _number(value: float) -> str:
  """4 decimals, or 3 significant digits below 0.001 (a learning rate of 1e-5)."""
  return f'{value:.4f}' if value == 0 or abs(value) >= 1e-3 else f'{value:.3g}'
