"""Run as `python -m tests.serving_limits_probe MODEL_DIR PAYLOAD_DIR`, in a process of
its own so that its peak RSS measures only what serving the requests cost.

Sends each payload (`<case>.bin`: one image; `batch.<i>.bin`: images of one request) to
`serving_image_bytes` and, wrapped in tf.Examples, to `serving_default`, then one good
request after each; prints JSON: per case and signature the error (or 'ANSWERED'),
whether every good request after it was answered, and the peak RSS growth in MiB.
"""

import glob
import json
import os
import resource
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position


def _peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _as_examples(images):
  return [tf.train.Example(features=tf.train.Features(feature={
      'image': tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))}))
          .SerializeToString() for image in images]


def _call(signatures, name, images):
  if name == 'serving_default':
    return signatures[name](examples=tf.constant(_as_examples(images)))
  return signatures[name](image_bytes=tf.constant(images))


def _read(path):
  with open(path, 'rb') as f:
    return f.read()


def main(model_dir: str, payload_dir: str) -> None:
  signatures = tf.saved_model.load(model_dir).signatures
  good = [_read(os.path.join(payload_dir, 'good.png'))]
  names = ('serving_image_bytes', 'serving_default')
  for name in names:  # warm: steady-state memory of a good call
    _call(signatures, name, good * 4)
  baseline = _peak_rss_mib()
  cases = sorted({os.path.basename(p).split('.')[0]
                  for p in glob.glob(os.path.join(payload_dir, '*.bin'))})
  results, good_after_each = {}, True
  for case in cases:
    images = [_read(p) for p in sorted(glob.glob(os.path.join(payload_dir, f'{case}.*bin')))]
    for name in names:
      try:
        _call(signatures, name, images)
        results[f'{case}/{name}'] = 'ANSWERED'
      except tf.errors.InvalidArgumentError as error:
        results[f'{case}/{name}'] = error.message
      outputs = _call(signatures, name, good)
      good_after_each &= outputs['probabilities'].shape[0] == 1
  print(json.dumps({'results': results, 'good_after_each': bool(good_after_each),
                    'rss_growth_mib': _peak_rss_mib() - baseline}))


if __name__ == '__main__':
  main(*sys.argv[1:])
