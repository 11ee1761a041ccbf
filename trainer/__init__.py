"""Module code run by the TFX Transform and Trainer components."""
