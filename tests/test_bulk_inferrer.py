"""The pipeline's BulkInferrer sends the model only batches within serving.max_batch."""

import os

import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from components.inference import inference_table
from components.inference.bulk_inferrer import BoundedExecutor
from contract.features import EXAMPLES_NUMERIC_SIGNATURE, FILENAME_KEY, IMAGE_KEY
from pipeline import beam
from pipeline.configs import ServingConfig
from tests.conftest import encode_image, random_pixels
from tests.tiny_model import export_tiny_model

NUM_EXAMPLES = 60


def _examples(folder: str) -> standard_artifacts.Examples:
  examples = standard_artifacts.Examples()
  examples.uri = folder
  examples.split_names = artifact_utils.encode_split_names(['unlabeled'])
  os.makedirs(os.path.join(folder, 'Split-unlabeled'))
  path = os.path.join(folder, 'Split-unlabeled', 'data.tfrecord.gz')
  with tf.io.TFRecordWriter(path, options='GZIP') as writer:
    for i in range(NUM_EXAMPLES):
      feature = {
          IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
              value=[encode_image(random_pixels((20, 24, 3), seed=i))])),
          FILENAME_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
              value=[f'{i}.png'.encode()]))}
      writer.write(tf.train.Example(
          features=tf.train.Features(feature=feature)).SerializeToString())
  return examples


def test_every_example_is_inferred_in_batches_the_signature_accepts(tmp_path):
  """Beam's BatchElements grows batches past 2 over 60 examples; the signature refuses
  them (the stock executor fails with 'Refused: more than serving.max_batch=2')."""
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / 'trainer')
  export_tiny_model(model.uri, serving=ServingConfig(max_batch=2))
  os.rename(os.path.join(model.uri, 'model'), os.path.join(model.uri, 'Format-Serving'))
  blessing = standard_artifacts.ModelBlessing()
  blessing.set_int_custom_property('blessed', 1)
  result = standard_artifacts.InferenceResult()
  result.uri = str(tmp_path / 'inference')
  os.makedirs(result.uri)
  executor = BoundedExecutor(BoundedExecutor.Context(beam_pipeline_args=beam.in_memory()))
  executor.Do({'examples': [_examples(str(tmp_path / 'examples'))], 'model': [model],
               'model_blessing': [blessing]},
              {'inference_result': [result]},
              {'model_spec': f'{{"model_signature_name": ["{EXAMPLES_NUMERIC_SIGNATURE}"]}}',
               'data_spec': '{}', 'max_batch_size': 2})
  names = sorted(name for name, _ in inference_table.read_prediction_logs(result.uri))
  assert names == sorted(f'{i}.png' for i in range(NUM_EXAMPLES))
