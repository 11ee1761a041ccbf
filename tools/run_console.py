"""The lines `transfer-pipeline run` prints per component: `[k/N] name`, then its result.

    [1/8] ImageFolderExampleGen ...
    [1/8] ImageFolderExampleGen done in 4.2 s: 35 train, 5 eval examples, 0 skipped

A component that fails on the data (DataValidation) adds one indented line per anomaly.
"""

import time
from typing import List

import console
from components.validation.data_validation import DataValidationError
from tools import component_results
from pipeline.observed_runner import Outcome

START = '...'


def _seconds(seconds: float) -> str:
  if seconds < 60:
    return f'{seconds:.1f} s'
  return f'{int(seconds // 60)} min {seconds % 60:02.0f} s'


class ComponentLines:
  """A `ComponentListener` that writes one line when a component starts and one when it ends."""

  def __init__(self):
    self._ids: List[str] = []
    self._started = 0.0

  def _prefix(self, component_id: str) -> str:
    return f'[{self._ids.index(component_id) + 1}/{len(self._ids)}] {component_id}'

  def pipeline_started(self, component_ids: List[str]) -> None:
    self._ids = list(component_ids)

  def component_started(self, component_id: str) -> None:
    self._started = time.monotonic()
    console.say(f'{self._prefix(component_id)} {START}')

  def component_finished(self, component_id: str, outcome: Outcome) -> None:
    took = _seconds(time.monotonic() - self._started)
    cached = outcome.state == 'CACHED'
    result = component_results.describe(outcome.outputs, cached)
    console.say(f'{self._prefix(component_id)} {"cached" if cached else "done"} in {took}'
                + (f': {result}' if result else ''))

  def component_failed(self, component_id: str, error: BaseException) -> None:
    took = _seconds(time.monotonic() - self._started)
    console.say(f'{self._prefix(component_id)} FAILED after {took}: {type(error).__name__}')
    for line in error.lines if isinstance(error, DataValidationError) else ():
      console.say(f'  {line}')
