"""TF Serving readiness: the serving canary, its warmup requests, the serving configuration."""
