"""The Evaluator's module: TFMA batches within the serving limits."""
