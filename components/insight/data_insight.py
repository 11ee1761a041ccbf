"""DataInsight: a TFX component that looks at the data before anything trains on it.

After ExampleGen, on every run: pooled backbone features of every train and eval image
(`features`), then likely label errors and outliers (cleanlab), image-quality issues and
duplicates (cleanvision) and eval images with a near-copy in train (`analysis`). Writes
`findings.csv` (one row per finding), `insight.json` (counts, each class's typical
images) and `thumbnails/` for the report. Nothing is removed; optional gates stop the
run before the Trainer.
"""

import json
import os
import shutil
import tempfile
import time
from typing import Dict, List

import tensorflow as tf
from PIL import Image
from tfx import v1 as tfx

import console
from components.example_gen.ingest_summary import VOCABULARY_FILE
from components.insight import analysis, features, findings as findings_lib
from contract.settings import ModelConfig

FINDINGS_FILE = 'findings.csv'
INSIGHT_FILE = 'insight.json'
THUMBNAILS_DIR = 'thumbnails'
THUMBNAIL_SIZE = 128
# The report shows at most this many findings of each kind (findings.csv has them all).
SHOWN_PER_KIND = 12
SPLITS = ['train', 'eval']


class DataInsight(tfx.dsl.Artifact):
  """What the data holds: `findings.csv`, `insight.json` and `thumbnails/`."""
  TYPE_NAME = 'transfer_pipeline.DataInsight'


def class_names_of(examples_uri: str) -> List[str]:
  with tf.io.gfile.GFile(os.path.join(examples_uri, VOCABULARY_FILE)) as f:
    return [line.strip() for line in f if line.strip()]


def shown_findings(findings: List[findings_lib.Finding]) -> List[findings_lib.Finding]:
  """The first SHOWN_PER_KIND findings of each kind (findings come sorted)."""
  taken: Dict[str, int] = {}
  shown = []
  for finding in findings:
    taken[finding.kind] = taken.get(finding.kind, 0) + 1
    if taken[finding.kind] <= SHOWN_PER_KIND:
      shown.append(finding)
  return shown


def write_thumbnails(files: List[str], local_paths: Dict[str, str], folder: str) -> Dict[str, str]:
  """Small JPEGs of `files`; returns file -> path relative to the artifact."""
  tf.io.gfile.makedirs(folder)
  written = {}
  for number, name in enumerate(dict.fromkeys(files)):
    if name not in local_paths:
      continue
    relative = f'{THUMBNAILS_DIR}/{number:05d}.jpg'
    try:
      with Image.open(local_paths[name]) as image:
        image = image.convert('RGB')
        image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        with tf.io.gfile.GFile(os.path.join(os.path.dirname(folder), relative), 'wb') as out:
          image.save(out, format='JPEG', quality=85)
    except OSError:
      continue  # an image PIL cannot open gets no thumbnail; its finding stays
    written[name] = relative
  return written


def run_insight(examples_uri: str, output_uri: str, model: ModelConfig,
                batch_size: int = 32) -> Dict:
  """Analyzes the train and eval splits of an Examples artifact into `output_uri`;
  returns insight.json's content."""
  start = time.monotonic()
  names = class_names_of(examples_uri)
  scratch = tempfile.mkdtemp(prefix='data-insight-')
  try:
    with console.Progress(label='Data insight: backbone features', unit='images') as bar:
      examples = features.read_examples(examples_uri, SPLITS, model,
                                        os.path.join(scratch, 'images'), batch_size, bar.update)
    feature_seconds = time.monotonic() - start
    insight = analysis.analyze(examples, names)
    shown = shown_findings(insight.findings)
    pictured = ([f.file for f in shown] + [f.other_file for f in shown if f.other_file]
                + [name for files in insight.typical.values() for name in files])
    tf.io.gfile.makedirs(output_uri)
    thumbnails = write_thumbnails(pictured, dict(zip(examples.files, examples.local_paths)),
                                  os.path.join(output_uri, THUMBNAILS_DIR))
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  with tf.io.gfile.GFile(os.path.join(output_uri, FINDINGS_FILE), 'w') as f:
    f.write(findings_lib.to_csv(insight.findings))
  summary = {
      'num_images': len(examples), 'class_names': names,
      'counts': findings_lib.counts(insight.findings),
      'shown_per_kind': SHOWN_PER_KIND, 'typical': insight.typical, 'thumbnails': thumbnails,
      'seconds': {'features': round(feature_seconds, 2),
                  'total': round(time.monotonic() - start, 2)},
  }
  with tf.io.gfile.GFile(os.path.join(output_uri, INSIGHT_FILE), 'w') as f:
    json.dump(summary, f, indent=2)
  return summary


def load_findings(insight_uri: str) -> List[findings_lib.Finding]:
  with tf.io.gfile.GFile(os.path.join(insight_uri, FINDINGS_FILE)) as f:
    return findings_lib.from_csv(f.read())


def load_summary(insight_uri: str) -> Dict:
  with tf.io.gfile.GFile(os.path.join(insight_uri, INSIGHT_FILE)) as f:
    return json.load(f)


@tfx.dsl.components.component
def DataInsightGen(
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    insight: tfx.dsl.components.OutputArtifact[DataInsight],
    model: tfx.dsl.components.Parameter[str],
    max_eval_leaks: tfx.dsl.components.Parameter[int] = -1,
    max_label_issue_fraction: tfx.dsl.components.Parameter[float] = -1.0,
) -> None:
  """Writes findings.csv, insight.json and thumbnails/ for the train and eval splits.

  `model`: the run's ModelConfig as JSON (the backbone, its weights and image size).
  Gates (negative: off) fail the component, so a Trainer that depends on it never runs.
  """
  summary = run_insight(examples.uri, insight.uri, ModelConfig(**json.loads(model)))
  counts = summary['counts']
  insight.set_int_custom_property('num_images', summary['num_images'])
  insight.set_int_custom_property('num_findings', sum(counts.values()))
  insight.set_string_custom_property('finding_counts', json.dumps(counts))
  path = os.path.join(insight.uri, FINDINGS_FILE)
  print(f'DataInsight: {findings_lib.describe_counts(counts)} in {summary["num_images"]} '
        f'images; {path}')
  findings_lib.check_gates(
      load_findings(insight.uri), summary['num_images'],
      max_eval_leaks if max_eval_leaks >= 0 else None,
      max_label_issue_fraction if max_label_issue_fraction >= 0 else None, path)
