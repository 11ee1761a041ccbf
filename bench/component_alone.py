"""One component of a finished local run, replayed alone in a fresh process.

  python bench/component_alone.py RUN/metadata.db Evaluator --output /tmp/replay

The local runner runs every component in one process, so a component's RSS high-water
there counts what earlier ones left; on Kubeflow each runs in a container of its own.
This reads the component's newest execution from ML Metadata (its input artifacts and
execution properties), runs its executor in this process with outputs under `--output`
(the run's own are left alone) and prints, as JSON, its seconds and this process's RSS
before the executor and at its high-water (imports included, as in a container).
Not for components that also write outside their outputs (the Pusher's push destination).
"""

import argparse
import importlib
import json
import os
import resource
import sys
import time
from typing import Dict, List, Sequence

from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import memory, mlmd  # pylint: disable=wrong-import-position


class UnknownComponent(ValueError):
  """The run has no execution of the component asked for."""


IN_MEMORY_BEAM = ('--runner=DirectRunner', '--direct_running_mode=in_memory',
                  '--direct_num_workers=1')


def replay(metadata_path: str, component: str, output: str,
           beam_args: Sequence[str] = IN_MEMORY_BEAM) -> Dict[str, List[types.Artifact]]:
  """Runs `component`'s executor on its newest execution's inputs and properties;
  returns the outputs it wrote under `output`."""
  store = mlmd.open_store(metadata_path)
  executions = {mlmd.component_name(store, e): e for e in mlmd.latest_run_executions(store)}
  if component not in executions:
    raise UnknownComponent(f'no {component} in the newest run of {metadata_path}; '
                           f'its components: {", ".join(sorted(executions))}')
  execution = executions[component]
  (execution_type,) = store.get_execution_types_by_id([execution.type_id])
  module, class_name = execution_type.name.rsplit('.', 1)
  executor_class = getattr(importlib.import_module(module), class_name).EXECUTOR_SPEC.executor_class
  inputs: Dict[str, List[types.Artifact]] = {}
  outputs: Dict[str, List[types.Artifact]] = {}
  for event in store.get_events_by_execution_ids([execution.id]):
    if not event.path.steps:
      continue
    (stored,) = store.get_artifacts_by_id([event.artifact_id])
    (artifact_type,) = store.get_artifact_types_by_id([stored.type_id])
    artifact = artifact_utils.deserialize_artifact(artifact_type, stored)
    key = event.path.steps[0].key
    if event.type == metadata_store_pb2.Event.OUTPUT:
      artifact.uri = os.path.join(output, key)
      os.makedirs(artifact.uri, exist_ok=True)
      outputs.setdefault(key, []).append(artifact)
    elif event.type == metadata_store_pb2.Event.INPUT:
      inputs.setdefault(key, []).append(artifact)
  properties = {key: getattr(value, value.WhichOneof('value'))
                for key, value in execution.custom_properties.items()
                if not key.startswith('__')}
  context = base_beam_executor.BaseBeamExecutor.Context(
      beam_pipeline_args=list(beam_args), tmp_dir=os.path.join(output, '.tmp'), unique_id='replay')
  executor_class(context).Do(inputs, outputs, properties)
  return outputs


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('metadata', help="the run's metadata.db")
  parser.add_argument('component', help="execution type name, e.g. 'Evaluator'")
  parser.add_argument('--output', required=True, help='folder for the replayed outputs')
  args = parser.parse_args()
  with open('/proc/self/statm') as f:
    start_rss = int(f.read().split()[1]) * memory.PAGE_MB
  start = time.time()
  try:
    replay(args.metadata, args.component, args.output)
  except UnknownComponent as e:
    parser.error(str(e))
  print(json.dumps({
      'component': args.component, 'seconds': round(time.time() - start, 1),
      'start_rss_mb': round(start_rss),
      'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


if __name__ == '__main__':
  main()
