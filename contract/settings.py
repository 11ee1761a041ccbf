"""The typed settings the Trainer and the components need, and their constants.

The leaf of the project: it imports nothing from it, so that `trainer/` and
`components/` can take their settings from here without importing the pipeline
package. `pipeline/configs.py` composes these sections into the run's `PipelineConfig`
(and checks their values); the pipeline passes them to the Trainer as plain values
through `custom_config` (`trainer_custom_config`).
"""

import dataclasses
from typing import Any, Dict, List, Tuple

# InceptionV3's stem needs at least 75x75 pixels.
MIN_IMAGE_SIZE = 75
WEIGHTS_CHOICES = ('imagenet', 'none')
POOLINGS = ('flatten', 'average')
TFLITE_QUANTIZATIONS = ('float32', 'dynamic_range', 'int8')
TUNING_ALGORITHMS = ('random', 'bayesian')
FEATURE_PRECISIONS = ('auto', 'float32', 'bfloat16')
LEARNING_RATE_DECAYS = ('cosine', 'constant')


@dataclasses.dataclass(frozen=True)
class IngestOptions:
  """The defaults of `data:` in the pipeline config."""
  eval_percent: int = 20
  num_shards: int = 4
  max_skipped_fraction: float = 0.5
  max_image_pixels: int = 40_000_000
  # Largest file read whole: a photo of 40 MP is well under it as JPEG or PNG.
  max_image_bytes: int = 50 * 2**20
  # Images longer than this on their long side are stored downscaled to it (0: kept as
  # they are); the pipeline sets it to data.max_side_multiple x model.image_size.
  max_image_side: int = 0
  # TFRecord input only: class names in label order (image folders: the folder names).
  class_names: Tuple[str, ...] = ()
  # Span folders (issue 22): the part of data.path with {SPAN}/{YYYY}{MM}{DD} specs, and
  # how many of the newest spans the ExampleGen itself ingests (more than 1 only where no
  # span resolver runs: Kubeflow V2).
  span_pattern: str = ''
  ingest_spans: int = 1


def max_stored_bytes(max_side: int) -> int:
  """The most bytes an image stored at `max_side` may take: raw RGB plus headers (a PNG or
  JPEG re-encoded at that size stays below it; a larger file is re-encoded)."""
  return 3 * max_side * max_side + 2 ** 16


@dataclasses.dataclass
class ModelConfig:
  """The lesson's model: frozen InceptionV3 cut at a layer, plus a small head."""
  # 'imagenet' (the lesson's; Keras downloads them once), 'none' (random init) or a
  # `_notop.h5` file: a local path or any URI TensorFlow reads (gs://...).
  weights: str = 'imagenet'
  cut_layer: str = 'mixed7'
  image_size: int = 150
  dense_units: int = 1024
  dropout: float = 0.2
  # How the head reads the cut layer's feature map: 'flatten' (the lesson; at mixed7 and
  # 150 px a 38M-weight Dense layer) or 'average' (GlobalAveragePooling2D: 0.8M weights,
  # much cheaper to train, a different model).
  pooling: str = 'flatten'
  # The frozen backbone's forward pass for the training features of the feature cache:
  # 'bfloat16' computes and stores them in bfloat16 (the head trains in float32; eval
  # features and the exported model stay float32); 'auto' picks bfloat16 where the
  # hardware has it (CPU flags avx512_bf16 or amx_bf16, or a GPU of compute capability
  # >= 8.0), else float32. With the offline stand-in weights, bfloat16 features at mixed7
  # differ from float32 by ~3% and validation accuracy is the same (`make bench`).
  feature_precision: str = 'auto'


@dataclasses.dataclass
class TrainingConfig:
  epochs: int = 20
  batch_size: int = 32
  learning_rate: float = 1e-4
  # 'cosine': the learning rate falls from `learning_rate` along a half cosine over the
  # epochs, so the last epochs settle instead of ending on a loss spike (RMSprop at the
  # lesson's constant 1e-4 on augmented views swings validation accuracy between 0.5
  # and 1.0 from epoch to epoch); 'constant' is the lesson's.
  learning_rate_decay: str = 'cosine'
  augment: bool = True
  # Compute the frozen backbone's features once (cached on disk) and train only the
  # head on them: the same model, without the repeated backbone passes. With
  # augmentation on, the features of `augmented_views` seeded augmentations of every
  # training image are cached; epoch e trains on view e mod K (K >= epochs: a fresh
  # augmentation every epoch, as without the cache).
  feature_cache: bool = True
  augmented_views: int = 4
  seed: int = 42
  # Phase two (off by default): after `epochs` epochs on the frozen backbone,
  # make the backbone trainable from this layer (e.g. 'mixed6') up to the cut
  # layer, BatchNorm excepted, and train `fine_tune_epochs` more epochs at
  # `fine_tune_learning_rate`. '' = no fine-tuning.
  fine_tune_from: str = ''
  fine_tune_epochs: int = 0
  fine_tune_learning_rate: float = 1e-5
  # Start the head from the latest blessed model's head when its classes are the same
  # (and its head has the same shape); else train from scratch and say why.
  warm_start: bool = True
  # A warm-started head trains this many epochs (at most `epochs`): it starts near a
  # solution, so a new span needs fewer epochs than the first.
  warm_start_epochs: int = 5


@dataclasses.dataclass
class ServingConfig:
  """Per-request limits baked into the exported signatures (see README, serving)."""
  # Largest encoded image a signature accepts (a larger one is refused unread).
  max_image_bytes: int = 10 * 2 ** 20
  # Most pixels an image header may declare (GIF: all frames together); checked
  # before decoding (a 25M-pixel JPEG took ~110 MiB to decode and resize here).
  max_image_pixels: int = 25_000_000
  # Most images (or tf.Examples) in one request; the Evaluator batches within it.
  max_batch: int = 32


@dataclasses.dataclass
class TuningConfig:
  """Hyperparameter search for the head with TFX's Tuner (off by default). Trials train
  the head on cached backbone features (so `training.augment` must be false); the
  Trainer then trains with the best trial's values."""
  enabled: bool = False
  trials: int = 10
  algorithm: str = 'random'  # 'random' or 'bayesian' (keras-tuner's oracles)
  epochs: int = 0  # epochs per trial; 0 = training.epochs
  # Trials are scored on this share of the train split (chosen by a hash of each image's
  # pixels), never on the eval split that the Evaluator blesses on.
  validation_percent: int = 20
  # The space: choices, or [min, max] ranges (learning rate sampled on a log scale).
  dense_units: List[int] = dataclasses.field(default_factory=lambda: [256, 512, 1024])
  dropout: List[float] = dataclasses.field(default_factory=lambda: [0.0, 0.5])
  learning_rate: List[float] = dataclasses.field(default_factory=lambda: [1e-5, 1e-3])
  pooling: List[str] = dataclasses.field(default_factory=lambda: list(POOLINGS))


@dataclasses.dataclass
class ExportConfig:
  """Extra formats written beside each exported SavedModel (off by default)."""
  # Also write model.tflite (pixels in, probabilities out) for devices.
  tflite: bool = False
  # 'float32', 'dynamic_range' (int8 weights) or 'int8' (weights and activations,
  # uint8 pixels in; calibrated on `tflite_representative_images` train images).
  tflite_quantization: str = 'float32'
  tflite_representative_images: int = 100


def trainer_custom_config(model: ModelConfig, training: TrainingConfig, serving: ServingConfig,
                          export: ExportConfig) -> Dict[str, Any]:
  """What the pipeline passes to `run_fn` (and `tuner_fn`) through custom_config. No class
  names: they come with the data, as Transform's class vocabulary."""
  return {'model': dataclasses.asdict(model), 'training': dataclasses.asdict(training),
          'serving': dataclasses.asdict(serving), 'export': dataclasses.asdict(export)}
