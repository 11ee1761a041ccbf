"""The lesson's two plots: training and validation accuracy, and loss, per epoch."""

import io
from typing import Dict, List, Optional

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from trainer import artifact_io  # pylint: disable=g-import-not-at-top


def training_curves_figure(history: Dict[str, List[float]],
                           fine_tune_start: Optional[int] = None) -> plt.Figure:
  """Accuracy and loss curves (train and validation) per epoch of a Keras history.

  `fine_tune_start`: epochs done before fine-tuning began; a dashed vertical
  line marks the boundary between the two phases.
  """
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for ax, metric in zip(axes, ('accuracy', 'loss')):
    epochs = range(1, len(history.get(metric, [])) + 1)
    ax.plot(epochs, history.get(metric, []), 'o-', label=f'training {metric}')
    if f'val_{metric}' in history:
      ax.plot(epochs, history[f'val_{metric}'], 's-', label=f'validation {metric}')
    if fine_tune_start is not None:
      ax.axvline(fine_tune_start + 0.5, color='gray', linestyle='--', label='fine-tuning starts')
    ax.set_title(f'Training and validation {metric}')
    ax.set_xlabel('epoch')
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  return fig


def save_training_curves(history: Dict[str, List[float]], path: str,
                         fine_tune_start: Optional[int] = None) -> None:
  """Writes `training_curves_figure` as a PNG to `path` (local or any URI TensorFlow
  writes, such as gs://)."""
  fig = training_curves_figure(history, fine_tune_start)
  png = io.BytesIO()
  fig.savefig(png, format='png', dpi=100)
  plt.close(fig)
  artifact_io.write_bytes(path, png.getvalue())
