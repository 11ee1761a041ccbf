"""The Evaluator calls `serving_default` only with batches within serving.max_batch."""

import logging

import tensorflow as tf
import tensorflow_model_analysis as tfma
from apache_beam.options.pipeline_options import PipelineOptions

from components.evaluator import evaluator_module
from pipeline import beam
from pipeline import definition as pipeline_lib
from pipeline.configs import ServingConfig, load_config
from tests.conftest import encode_image, random_pixels
from tests.tiny_model import export_tiny_model

NUM_EXAMPLES = 24


def _write_examples(path: str) -> None:
  with tf.io.TFRecordWriter(path) as writer:
    for i in range(NUM_EXAMPLES):
      features = {
          'image': tf.train.Feature(bytes_list=tf.train.BytesList(
              value=[encode_image(random_pixels((20 + i, 24, 3), seed=i))])),
          'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 2])),
      }
      writer.write(tf.train.Example(
          features=tf.train.Features(feature=features)).SerializeToString())


def test_evaluator_batches_fit_the_signature_limit(tmp_path, caplog):
  serving = ServingConfig(max_batch=1)
  model_dir = export_tiny_model(str(tmp_path), serving=serving)
  config = load_config(overrides={'data.path': 'unused', 'evaluation.min_accuracy': 0.0,
                                  'serving.max_batch': serving.max_batch})
  eval_config = pipeline_lib.eval_config(config)
  for spec in eval_config.metrics_specs:  # no baseline here: no comparison with one
    for metric in spec.metrics:
      for per_slice in metric.per_slice_thresholds:
        per_slice.threshold.ClearField('change_threshold')
  data = str(tmp_path / 'eval.tfrecord')
  _write_examples(data)
  model = tfma.default_eval_shared_model(eval_saved_model_path=model_dir,
                                         eval_config=eval_config)
  caplog.set_level(logging.WARNING)
  result = tfma.run_model_analysis(
      eval_shared_model=model, eval_config=eval_config, data_location=data,
      output_path=str(tmp_path / 'evaluation'),
      extractors=evaluator_module.custom_extractors(model, eval_config),
      pipeline_options=PipelineOptions(beam.in_memory()))
  overall = dict(result.slicing_metrics)[()]['']['']
  assert overall['example_count']['doubleValue'] == NUM_EXAMPLES
  assert 0.0 <= overall['sparse_categorical_accuracy']['doubleValue'] <= 1.0
  # TFMA retries a refused batch one example at a time, with this warning.
  assert 'Large batch_size' not in caplog.text


def test_split_batches_keeps_every_row_once():
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  batch = pa.RecordBatch.from_arrays([pa.array(range(7))], ['x'])
  key = evaluator_module._BATCH  # pylint: disable=protected-access
  parts = list(evaluator_module.split_batches({key: batch, 'other': 1}, max_rows=3))
  assert [p[key].num_rows for p in parts] == [3, 3, 1]
  assert sum((p[key].column(0).to_pylist() for p in parts), []) == list(range(7))
  assert all(p['other'] == 1 for p in parts)


def test_a_run_with_a_baseline_keeps_the_candidates_plot_and_metrics(tmp_path, caplog):
  """As the Evaluator runs it with the last blessed model: two models' results in one
  output. The report reads the candidate's confusion matrix and metrics, and TFMA has
  nothing to warn about ("Fail to find plots for model name: None")."""
  from components.report import tfma_results  # pylint: disable=g-import-not-at-top
  model_dir = export_tiny_model(str(tmp_path))
  config = load_config(overrides={'data.path': 'unused', 'evaluation.min_accuracy': 0.0,
                                  'evaluation.max_accuracy_drop': 1.0})
  eval_config = pipeline_lib.eval_config(config)
  candidate = eval_config.model_specs[0]
  candidate.name = 'candidate'
  baseline = eval_config.model_specs.add()
  baseline.CopyFrom(candidate)
  baseline.name, baseline.is_baseline = 'baseline', True
  models = [tfma.default_eval_shared_model(eval_saved_model_path=model_dir, model_name=name,
                                           eval_config=eval_config)
            for name in ('candidate', 'baseline')]
  data = str(tmp_path / 'eval.tfrecord')
  _write_examples(data)
  output = str(tmp_path / 'evaluation')
  tfma.run_model_analysis(eval_shared_model=models, eval_config=eval_config,
                          data_location=data, output_path=output,
                          pipeline_options=PipelineOptions(beam.in_memory()))
  caplog.set_level(logging.WARNING)
  matrix = tfma_results.load_confusion_matrix(output, num_classes=2)
  metrics = tfma_results.load_metrics(output)
  assert matrix is not None and matrix.sum() == NUM_EXAMPLES
  assert metrics['Overall']['example_count'] == NUM_EXAMPLES
  assert 'sparse_categorical_accuracy' in metrics['Overall']
  assert 'Fail to find' not in caplog.text
