"""Resolvers of what a run compares with or starts from: the last accepted statistics,
the Trainer's warm-start model and the Evaluator's baseline."""
