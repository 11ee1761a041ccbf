"""Evaluator UDFs (`module_path`): predictions in batches the serving signature accepts.

The Evaluator reads examples in Arrow batches that tfx_bsl sizes by timing, up to
1,000 rows, and TFMA calls `serving_default` once per batch. A batch over the
model's `serving.max_batch` would be refused, and TFMA would retry it one example at
a time. The first extractor here cuts every batch into slices of at most
`ModelSpec.inference_batch_size` rows, which `pipeline.eval_config` sets to
`serving.max_batch`; TFMA's default extractors follow unchanged.
"""

from typing import Iterator, List

import apache_beam as beam
import tensorflow_model_analysis as tfma

_BATCH = tfma.constants.ARROW_RECORD_BATCH_KEY


def split_batches(extracts: tfma.Extracts, max_rows: int) -> Iterator[tfma.Extracts]:
  """The batched extract in slices of at most `max_rows` rows (others unchanged)."""
  batch = extracts.get(_BATCH)
  if batch is None or batch.num_rows <= max_rows:
    yield extracts
    return
  for start in range(0, batch.num_rows, max_rows):
    yield dict(extracts, **{_BATCH: batch.slice(start, max_rows)})


def max_inference_batch(eval_config: tfma.EvalConfig) -> int:
  """The smallest inference_batch_size of the model specs (0: none set)."""
  sizes = [spec.inference_batch_size for spec in eval_config.model_specs
           if spec.inference_batch_size]
  return min(sizes, default=0)


def custom_extractors(eval_shared_model, eval_config: tfma.EvalConfig,
                      tensor_adapter_config=None) -> List[tfma.extractors.Extractor]:
  """Called by TFX's Evaluator: TFMA's default extractors, after the batch splitter."""
  defaults = tfma.default_extractors(eval_shared_model=eval_shared_model,
                                     eval_config=eval_config,
                                     tensor_adapter_config=tensor_adapter_config)
  max_rows = max_inference_batch(eval_config)
  if not max_rows:
    return defaults
  splitter = tfma.extractors.Extractor(
      stage_name='SplitBatchesForServingLimit',
      ptransform=beam.FlatMap(split_batches, max_rows=max_rows))
  return [splitter, *defaults]
