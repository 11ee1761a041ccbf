"""Known-harmless library messages, dropped where they are emitted.

Each entry names where a message comes from (a warning's category and module, or a
logger) and a pattern of its text, so any other warning from the same library still
reaches the log. Standard library only: the CLI installs these before heavy imports.
"""

import logging
import re
import warnings
from typing import Dict, List, Tuple, Type

# (category, message regex, regex of the module that issues the warning)
WARNINGS: List[Tuple[Type[Warning], str, str]] = [
    # google-api-core: once per Google client package imported by TFX (about 14 per run).
    (FutureWarning, r'You are using a non-supported Python version', r'google\.api_core'),
    # TFMA's confusion-matrix metrics divide 0 by 0 for a class without examples (-> NaN).
    (RuntimeWarning, r'invalid value encountered in divide', r'tensorflow_model_analysis'),
]

# logger name -> message regexes
LOG_RECORDS: Dict[str, List[str]] = {
    'absl': [
        # TFX's channel resolver, once per resolved input of every component.
        r'(Artifact|Context)Query\.property_predicate is not supported',
        # Examples written without the property are read as tf.Examples, which they are.
        r'Examples artifact does not have payload_format custom property',
    ],
    'tensorflow': [
        # TF deprecation notices about calls made inside installed libraries (tfx_bsl,
        # TFMA, ...); a deprecated call in this project's code still shows.
        r"From \S*site-packages\S*: .* is deprecated and will be removed",
        # Keras, after loading the exported model for evaluation: metrics build on use.
        r'Compiled the loaded model, but the compiled metrics have yet to be built',
    ],
}


class MessageFilter(logging.Filter):
  """Drops records whose message matches one of `patterns` (re.match at the start)."""

  def __init__(self, patterns: List[str]):
    super().__init__()
    self.patterns = [re.compile(p) for p in patterns]

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(p.match(message) for p in self.patterns)


def install() -> None:
  """Adds the warning filters and one MessageFilter per logger (idempotent)."""
  for category, message, module in WARNINGS:
    warnings.filterwarnings('ignore', message=message, category=category, module=module)
  for name, patterns in LOG_RECORDS.items():
    logger = logging.getLogger(name)
    if not any(isinstance(f, MessageFilter) for f in logger.filters):
      logger.addFilter(MessageFilter(patterns))
