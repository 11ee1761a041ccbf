"""Module code run by the TFX Transform and Trainer components."""


def _skip_autograph_for_tf_keras() -> None:
  """Stops autograph from converting tf_keras' own code, as it never converted tf.keras.

  TF 2.16 lists `keras` (Keras 3) but not `tf_keras` among the modules autograph
  leaves alone, so every `fit` and every SavedModel export re-converts hundreds of
  tf_keras functions: measured here, 2.3x slower exports (40 s vs 17 s) and ~8x
  more tracing per `fit`. tf_keras code is written to run unconverted (as tf.keras
  did inside TensorFlow until 2.15). The rule list is private API, hence the guard.
  """
  try:
    from tensorflow.python.autograph.core import config  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  if not any(isinstance(r, config.DoNotConvert) and r.matches('tf_keras')
             for r in config.CONVERSION_RULES):
    config.CONVERSION_RULES = (config.DoNotConvert('tf_keras'),) + tuple(config.CONVERSION_RULES)


_skip_autograph_for_tf_keras()
