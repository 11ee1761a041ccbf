"""The contract between the layers: feature keys, signature names and typed settings.

Imports nothing from the project. Importing it selects Keras 2 (TFX 1.16 needs it):
TensorFlow reads TF_USE_LEGACY_KERAS once, when it is first imported, so every entry
point (tools.cli, pipeline.local_runner and kubeflow.runner run as scripts) imports
this package before anything imports TensorFlow.
"""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'
