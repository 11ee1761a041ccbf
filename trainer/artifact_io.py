"""Files of artifacts through TensorFlow's filesystems (tf.io.gfile), never `os`/`open`.

On Kubeflow and Vertex the pipeline root is `gs://...`: what the Trainer, the Tuner and
the report write, list or delete must reach that bucket, not the pod's local disk.
tf.io.gfile handles local paths and every URI TensorFlow reads alike.
"""

import contextlib
import os
import tempfile
from typing import Iterator

import tensorflow as tf


def is_uri(path: str) -> bool:
  """'gs://b/x', 'ram://x', ... (a filesystem scheme) rather than a local path."""
  return '://' in path


def remove_dir(path: str) -> None:
  """Deletes `path` and everything under it, where it was written; no error if absent."""
  if tf.io.gfile.exists(path):
    tf.io.gfile.rmtree(path)


def write_bytes(path: str, data: bytes) -> None:
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(data)


def read_bytes(path: str) -> bytes:
  with tf.io.gfile.GFile(path, 'rb') as f:
    return f.read()


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
  """A local file with the content of `path`, for libraries that read only local files
  (h5py, Keras' HDF5 weights): `path` itself when local, else a temporary copy that is
  deleted afterwards. Raises FileNotFoundError when `path` does not exist."""
  if not is_uri(path):
    if not os.path.isfile(path):
      raise FileNotFoundError(path)
    yield path
    return
  if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
    raise FileNotFoundError(path)
  with tempfile.TemporaryDirectory(prefix='artifact_io-') as folder:
    local = os.path.join(folder, os.path.basename(path))
    tf.io.gfile.copy(path, local, overwrite=True)
    yield local
