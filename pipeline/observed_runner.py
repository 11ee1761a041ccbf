"""LocalDagRunner that tells a listener when each component starts and ends.

TFX 1.16's LocalDagRunner runs the nodes of the compiled pipeline in order, one
`launcher.Launcher(...).launch()` each, and offers no hook. `ObservedLocalDagRunner`
swaps in a Launcher subclass for the duration of its run: it calls the listener around
`launch()` and reads the execution's state and output artifacts back from ML Metadata
(a cached execution's outputs are the earlier run's artifacts, found the same way).
System nodes (the latest-blessed-model resolver) run no executor and are not reported.
"""

import contextlib
import dataclasses
from typing import Dict, Iterator, List, Optional, Protocol

from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration.local import local_dag_runner, runner_utils
from tfx.orchestration.portable import launcher
from tfx.proto.orchestration import pipeline_pb2

Artifacts = Dict[str, List[metadata_store_pb2.Artifact]]


@dataclasses.dataclass
class Outcome:
  """What one component execution left in ML Metadata."""
  state: str           # COMPLETE, CACHED, ...
  outputs: Artifacts   # output key -> artifacts


class ComponentListener(Protocol):

  def pipeline_started(self, component_ids: List[str]) -> None:
    ...

  def component_started(self, component_id: str) -> None:
    ...

  def component_finished(self, component_id: str, outcome: Outcome) -> None:
    ...

  def component_failed(self, component_id: str, error: BaseException) -> None:
    ...


def read_outcome(mlmd_handle, execution_id: int) -> Outcome:
  """The execution's last known state and its OUTPUT artifacts by output key."""
  store = mlmd_handle.store
  [execution] = store.get_executions_by_id([execution_id])
  events = [e for e in store.get_events_by_execution_ids([execution_id])
            if e.type in (metadata_store_pb2.Event.OUTPUT,
                          metadata_store_pb2.Event.DECLARED_OUTPUT)]
  by_id = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
  outputs: Artifacts = {}
  for event in events:
    outputs.setdefault(event.path.steps[0].key, []).append(by_id[event.artifact_id])
  return Outcome(metadata_store_pb2.Execution.State.Name(execution.last_known_state), outputs)


def _observed_launcher(listener: ComponentListener, component_ids: List[str]):
  """A Launcher class that reports the launches of `component_ids` to `listener`."""

  class ObservedLauncher(launcher.Launcher):

    def launch(self):
      node_id = self._pipeline_node.node_info.id  # pylint: disable=protected-access
      if node_id not in component_ids:
        return super().launch()
      listener.component_started(node_id)
      try:
        info = super().launch()
      except BaseException as e:
        listener.component_failed(node_id, e)
        raise
      if info is None:  # the driver decided not to run it
        listener.component_finished(node_id, Outcome('SKIPPED', {}))
        return info
      with self._mlmd_connection as m:  # pylint: disable=protected-access
        listener.component_finished(node_id, read_outcome(m, info.execution_id))
      return info

  return ObservedLauncher


@contextlib.contextmanager
def _launching_with(launcher_class) -> Iterator[None]:
  original = launcher.Launcher
  launcher.Launcher = launcher_class
  try:
    yield
  finally:
    launcher.Launcher = original


class ObservedLocalDagRunner(local_dag_runner.LocalDagRunner):
  """`LocalDagRunner` whose component launches are reported to `listener`."""

  def __init__(self, listener: Optional[ComponentListener] = None):
    super().__init__()
    self._listener = listener

  def run_with_ir(self, pipeline: pipeline_pb2.Pipeline,
                  run_options: Optional[pipeline_pb2.RunOptions] = None) -> None:
    if self._listener is None:
      return super().run_with_ir(pipeline, run_options)
    executors = runner_utils.extract_local_deployment_config(pipeline).executor_specs
    component_ids = [n.pipeline_node.node_info.id for n in pipeline.nodes
                     if n.pipeline_node.node_info.id in executors]
    self._listener.pipeline_started(component_ids)
    with _launching_with(_observed_launcher(self._listener, component_ids)):
      return super().run_with_ir(pipeline, run_options)
