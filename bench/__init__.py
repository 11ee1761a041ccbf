"""Benchmark: lesson-style script vs this pipeline's Trainer, pipeline, serving and memory."""
