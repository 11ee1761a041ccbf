"""Batch inference: the bounded BulkInferrer and its prediction tables."""
