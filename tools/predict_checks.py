"""What `transfer-pipeline predict` checks before TensorFlow is imported (standard library
only), so that a mistake answers at once in one line."""

import os
from typing import Optional, Sequence

from components.inference import prediction_table
from pipeline.configs import ConfigError


class NothingToClassify(ValueError):
  """No input file could be classified (none found, or every one skipped)."""


def check_batch_size(batch_size: int) -> None:
  if batch_size < 1:
    raise ConfigError('--batch-size: expected an integer >= 1.')


def check_inputs(inputs: Sequence[str]) -> None:
  """Every named file or folder exists, and they hold at least one file."""
  for path in inputs:
    if not os.path.lexists(path):
      raise ConfigError(f'{path} does not exist.')
  if not any(_holds_a_file(path) for path in inputs):
    raise NothingToClassify(f'No files to classify in {", ".join(inputs)}.')


def _holds_a_file(path: str) -> bool:
  if not os.path.isdir(path):
    return True
  return any(files for _, _, files in os.walk(path))


def output_format(output: Optional[str]) -> str:
  """'.csv' or '.jsonl' for `--output` (stdout: '.csv'); its folder must exist."""
  if not output:
    return '.csv'
  try:
    fmt = prediction_table.format_of(output)
  except ValueError as e:
    raise ConfigError(f'--output: {e}') from e
  parent = os.path.dirname(os.path.abspath(output))
  if not os.path.isdir(parent):
    raise ConfigError(f'--output: folder {parent} does not exist.')
  return fmt
