"""ExampleGen for a folder of class subfolders of images."""

import os

from tfx import v1 as tfx
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from components import image_ingest


@tfx.dsl.components.component
def ImageFolderExampleGen(
    examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    data_root: tfx.dsl.components.Parameter[str],
    eval_percent: tfx.dsl.components.Parameter[int] = 20,
    num_shards: tfx.dsl.components.Parameter[int] = 4,
    max_skipped_fraction: tfx.dsl.components.Parameter[float] = 0.5,
    max_image_pixels: tfx.dsl.components.Parameter[int] = 40_000_000,
    data_fingerprint: tfx.dsl.components.Parameter[str] = '',
) -> None:
  """Writes train/eval tf.Examples (`image` bytes, int64 `label`, `filename`).

  Beside the splits, the artifact holds `label_vocabulary.txt` (class names in
  label order), `quarantine.jsonl` (every skipped file with its reason) and
  `ingest_summary.json` (counts per class and split).

  `data_fingerprint` is not read: it changes when the folder's files change,
  so that the pipeline cache never reuses examples of an older folder.
  """
  del data_fingerprint
  summary = image_ingest.ingest(
      data_root, examples.uri, eval_percent=eval_percent, num_shards=num_shards,
      max_skipped_fraction=max_skipped_fraction, max_image_pixels=max_image_pixels)
  examples.split_names = artifact_utils.encode_split_names(list(image_ingest.SPLITS))
  examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
  examples_utils.set_file_format(examples, 'tfrecords_gzip')
  examples.set_string_custom_property('label_vocabulary', ','.join(summary.class_names))
  examples.set_int_custom_property('num_skipped', summary.total_skipped)
  for split in image_ingest.SPLITS:
    examples.set_int_custom_property(f'num_{split}', sum(summary.written[split].values()))
  print(f'ImageFolderExampleGen: {sum(summary.written["train"].values())} train, '
        f'{sum(summary.written["eval"].values())} eval examples, '
        f'{summary.total_skipped} skipped (see {os.path.join(examples.uri, image_ingest.QUARANTINE_FILE)})')
