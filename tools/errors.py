"""Errors that are the user's to fix: the CLI prints them in one line, no traceback."""

from components.example_gen.ingest_summary import IngestError
from components.validation.curated_schema import SchemaFileError
from components.validation.data_validation import DataValidationError
from pipeline.configs import ConfigError
from pipeline.output_lock import OutputLockedError
from tools.serving_client import ServingError
from trainer.model import ModelConfigError

USER_ERRORS = (ConfigError, DataValidationError, IngestError, ModelConfigError, OutputLockedError,
               SchemaFileError, ServingError)
