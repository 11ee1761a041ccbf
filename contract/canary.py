"""The serving canary's settings: a module of its own, outside the import closure of the
training code, whose source is part of the Trainer's cache key (pipeline/fingerprints.py)."""

import dataclasses


@dataclasses.dataclass
class CanaryConfig:
  """The serving canary before the Pusher (components/serving/serving_canary.py): the
  candidate, loaded in a fresh process from its files, must pass every check."""
  # Load with the `serve` tag plus the warmup requests' replay, in seconds.
  max_load_seconds: float = 120.0
  # Peak RSS of the serving process; below the Deployment's 4 GiB memory limit.
  max_memory_mib: int = 3072
  # Largest difference of a probability from the Evaluator's serving_default call.
  tolerance: float = 1e-4
  # Eval examples sent through every signature (and written as warmup requests).
  num_examples: int = 8
  # Timed REST requests at batch 1 and at serving.max_batch (p50/p99 latency).
  timed_requests: int = 10
  # The serving process is stopped after this many seconds.
  timeout_seconds: int = 900
