"""Errors that are the user's to fix: the CLI prints them in one line, no traceback."""

from components.example_gen.ingest_summary import IngestError
from components.insight.findings import GateError
from pipeline.configs import ConfigError
from pipeline.output_lock import OutputLockedError
from trainer.model import ModelConfigError

USER_ERRORS = (ConfigError, IngestError, ModelConfigError, OutputLockedError, GateError)
