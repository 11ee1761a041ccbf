"""The progress helper and the known-noise filters (no TensorFlow needed)."""

import io
import logging
import warnings

import pytest

import console
from console import known_noise


class _Terminal(io.StringIO):

  def isatty(self):
    return True


def _clock(step):
  now = [0.0]

  def tick():
    now[0] += step
    return now[0]
  return tick


def test_progress_on_a_terminal_redraws_one_bar_with_a_rate():
  stream = _Terminal()
  with console.Progress(total=40, label='Feature pass', unit='images', stream=stream,
                        clock=_clock(0.25)) as bar:
    for _ in range(4):
      bar.update(10)
  text = stream.getvalue()
  assert text.count('\n') == 1 and text.endswith('\n'), repr(text)  # redrawn in place
  assert '\r' in text and '[######' in text and 'images/s' in text
  assert text.split('\r')[-1].startswith('Feature pass: 40 images in ')


def test_progress_elsewhere_writes_periodic_plain_lines():
  stream = io.StringIO()
  items = list(console.progress(range(30), label='Ingest', unit='files', stream=stream,
                                clock=_clock(1.0), interval=10))
  assert items == list(range(30))
  lines = stream.getvalue().splitlines()
  assert '\r' not in stream.getvalue()
  assert lines[0].startswith('Ingest: 10/30 files (33%), ') and lines[0].endswith('files/s')
  assert len(lines) == 4 and lines[-1].startswith('Ingest: 30 files in ')


def test_progress_writes_to_the_console_stream_by_default():
  stream = io.StringIO()
  with console.writing_to(stream):
    list(console.progress([1, 2], label='Predict', unit='images'))
  assert stream.getvalue().startswith('Predict: 2 images in ')


def _passes(logger_name, message, *args):
  record = logging.getLogger(logger_name).makeRecord(
      logger_name, logging.WARNING, __file__, 1, message, args, None)
  return logging.getLogger(logger_name).filter(record)


def test_known_noise_is_dropped_by_message_and_real_warnings_pass():
  known_noise.install()
  known_noise.install()  # idempotent
  assert not _passes('absl', 'ArtifactQuery.property_predicate is not supported.')
  assert _passes('absl', 'Something else went wrong.')
  library = '/venv/lib/python3.10/site-packages/tfx_bsl/tfxio/tf_example_record.py:343'
  deprecation = 'From %s: %s (from %s) is deprecated and will be removed in a future version.'
  assert not _passes('tensorflow', deprecation, library, 'parse_example_dataset', 'tf.data')
  assert _passes('tensorflow', deprecation, '/home/me/project/trainer/task.py:12', 'f', 'tf')
  assert _passes('apache_beam', 'ArtifactQuery.property_predicate is not supported.')


@pytest.mark.parametrize('category, message, module, dropped', [
    (FutureWarning, 'You are using a non-supported Python version (3.10.13).',
     'google.api_core._python_version_support', True),
    (FutureWarning, 'You are using a non-supported Python version (3.10.13).', 'trainer.task', False),
    (FutureWarning, 'Something will change.', 'google.api_core.x', False),
    (RuntimeWarning, 'invalid value encountered in divide',
     'tensorflow_model_analysis.metrics.confusion_matrix_metrics', True),
])
def test_known_noise_warnings_are_matched_by_message_and_module(category, message, module,
                                                                 dropped):
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    known_noise.install()
    warnings.warn_explicit(message, category, 'x.py', 1, module=module)
  assert (len(caught) == 0) == dropped
