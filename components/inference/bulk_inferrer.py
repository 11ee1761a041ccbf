"""TFX's BulkInferrer, with batches the serving signature accepts.

The stock BulkInferrer lets Beam's `BatchElements` grow batches by timing, to hundreds
of examples, and every signature of the exported model refuses a batch over
`serving.max_batch` (InvalidArgumentError: the whole run fails). This component is the
stock one with one more execution parameter, `max_batch_size`, which its executor puts
into tfx_bsl's `InferenceSpecType.batch_parameters`, the bound `BatchElements` honours.
Inputs, outputs, the blessing check and the InferenceResult are unchanged.

tfx_bsl 1.16 drops those batch parameters: `RunInference` wraps the model handler in
`_ModelHandlerWrapper`, which does not forward `batch_elements_kwargs`. Importing this
module adds the forwarding method (only where the wrapper lacks it);
tests/test_bulk_inferrer.py fails if the bound is not applied.
"""

from typing import Any, Dict

from tfx import types
from tfx.components.bulk_inferrer import component as bulk_inferrer_component
from tfx.components.bulk_inferrer import executor as bulk_inferrer_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import bulk_inferrer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx_bsl.beam import run_inference
from tfx_bsl.public.proto import model_spec_pb2

MAX_BATCH_SIZE_KEY = 'max_batch_size'


def _forward_batch_elements_kwargs(wrapper) -> Dict[str, Any]:
  return wrapper._model_handler.batch_elements_kwargs()  # pylint: disable=protected-access


# pylint: disable=protected-access
if 'batch_elements_kwargs' not in vars(run_inference._ModelHandlerWrapper):
  run_inference._ModelHandlerWrapper.batch_elements_kwargs = _forward_batch_elements_kwargs
# pylint: enable=protected-access


class BoundedBulkInferrerSpec(standard_component_specs.BulkInferrerSpec):
  PARAMETERS = {**standard_component_specs.BulkInferrerSpec.PARAMETERS,
                MAX_BATCH_SIZE_KEY: ExecutionParameter(type=int)}


class BoundedExecutor(bulk_inferrer_executor.Executor):
  """The stock executor; inference batches hold at most `max_batch_size` examples."""

  def _get_inference_spec(self, model_path: str, exec_properties: Dict[str, Any]
                          ) -> model_spec_pb2.InferenceSpecType:
    spec = super()._get_inference_spec(model_path, exec_properties)
    spec.batch_parameters.max_batch_size = exec_properties[MAX_BATCH_SIZE_KEY]
    return spec


class BoundedBulkInferrer(bulk_inferrer_component.BulkInferrer):
  """BulkInferrer(examples, model, model_blessing) writing an InferenceResult, in batches
  of at most `max_batch_size` examples (the model's `serving.max_batch`)."""

  SPEC_CLASS = BoundedBulkInferrerSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(BoundedExecutor)

  def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
               model_blessing: types.BaseChannel, model_spec: bulk_inferrer_pb2.ModelSpec,
               max_batch_size: int):
    spec = BoundedBulkInferrerSpec(
        examples=examples, model=model, model_blessing=model_blessing,
        data_spec=bulk_inferrer_pb2.DataSpec(), model_spec=model_spec,
        inference_result=types.Channel(type=standard_artifacts.InferenceResult),
        max_batch_size=max_batch_size)
    base_beam_component.BaseBeamComponent.__init__(self, spec=spec)  # pylint: disable=non-parent-init-called
