"""Custom TFX components of the image transfer pipeline."""
