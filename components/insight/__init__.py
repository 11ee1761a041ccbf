"""Data insight: likely label errors, image-quality issues, duplicates, leaks and outliers."""
