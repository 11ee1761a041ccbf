"""Reads a local run's ML Metadata: component timings and output artifacts."""

import os
from typing import Dict, List, Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from tools import run_summary


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = os.path.abspath(metadata_path)
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return metadata_store.MetadataStore(config)


def latest_run_executions(
    store: metadata_store.MetadataStore) -> List[metadata_store_pb2.Execution]:
  """Executions of the newest `pipeline_run` context, oldest first."""
  latest = run_summary.latest_run(store)
  return sorted(store.get_executions_by_context(latest.id), key=lambda e: e.id)


def component_name(store: metadata_store.MetadataStore,
                   execution: metadata_store_pb2.Execution) -> str:
  """'Transform', 'Trainer', ... (the last part of the execution type name)."""
  (execution_type,) = store.get_execution_types_by_id([execution.type_id])
  return execution_type.name.rsplit('.', 1)[-1]


def component_timings(metadata_path: str) -> Dict[str, Dict[str, float]]:
  """Component -> {start, end, seconds, state} of the newest run (unix seconds)."""
  store = open_store(metadata_path)
  timings = {}
  for execution in latest_run_executions(store):
    start = execution.create_time_since_epoch / 1000
    end = execution.last_update_time_since_epoch / 1000
    timings[component_name(store, execution)] = {
        'start': start, 'end': end, 'seconds': end - start,
        'state': metadata_store_pb2.Execution.State.Name(execution.last_known_state)}
  return timings


def output_artifact(metadata_path: str, component: str, key: str):
  """(artifact, artifact type) of the newest `key` output (e.g. 'transformed_examples')
  of `component`, as MLMD protos; (None, None) when there is none."""
  store = open_store(metadata_path)
  executions = [e for e in store.get_executions() if component_name(store, e) == component]
  for execution in sorted(executions, key=lambda e: -e.id):
    for event in store.get_events_by_execution_ids([execution.id]):
      if (event.type == metadata_store_pb2.Event.OUTPUT and event.path.steps
          and event.path.steps[0].key == key):
        (artifact,) = store.get_artifacts_by_id([event.artifact_id])
        (artifact_type,) = store.get_artifact_types_by_id([artifact.type_id])
        return artifact, artifact_type
  return None, None


def output_uri(metadata_path: str, component: str, key: str) -> Optional[str]:
  artifact, _ = output_artifact(metadata_path, component, key)
  return artifact.uri if artifact else None
