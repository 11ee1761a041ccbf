"""Data validation: a curated schema, span-to-span drift, and the gate before training."""
