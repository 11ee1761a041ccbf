"""The contract between the layers: feature keys, signature names and typed settings.
Imports nothing from the project."""
