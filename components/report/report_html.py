"""Pure rendering for the evaluation report: confusion matrix, misclassified ranking,
PNG figures and the self-contained HTML page (no TFX, no TensorFlow).

`components.report.evaluation_report` gathers the inputs from the pipeline's artifacts and
calls these functions; the unit tests call them with synthetic data.
"""

import base64
import dataclasses
import html
import io
import math
from typing import Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
from PIL import Image

THUMBNAIL_SIZE = 160
# Class names are folder names: drawn as typed, never as math text (`$x$`) or TeX.
_LITERAL_TEXT = {'text.parse_math': False, 'text.usetex': False}


@dataclasses.dataclass
class Prediction:
  """One eval example: true and predicted class ids, confidence of the prediction."""
  filename: str
  label: int
  predicted: int
  confidence: float  # probability of the predicted class
  image: Optional[bytes] = None  # encoded image, kept only for the grid

  @property
  def correct(self) -> bool:
    return self.label == self.predicted


@dataclasses.dataclass
class Decision:
  """The Evaluator's verdict and the reasons behind it."""
  blessed: bool
  thresholds: List[str]  # every threshold that was checked
  failures: List[str]    # the ones that failed (empty when blessed)
  baseline: Optional[str]  # the last blessed model compared against, if any
  pushed_to: Optional[str] = None  # the serving version the Pusher wrote, if it pushed
  baseline_not_used: Optional[str] = None  # why the last blessed model was not compared
  unchanged_as: Optional[str] = None  # not pushed: this serving version is the same model


def confusion_matrix(labels: Sequence[int], predicted: Sequence[int],
                     num_classes: int) -> np.ndarray:
  """[true class, predicted class] -> count (grown if an id is out of range)."""
  labels = np.asarray(labels, dtype=np.int64)
  predicted = np.asarray(predicted, dtype=np.int64)
  size = max([num_classes, *(labels + 1), *(predicted + 1)])
  matrix = np.zeros((size, size), dtype=np.int64)
  np.add.at(matrix, (labels, predicted), 1)
  return matrix


def accuracy(matrix: np.ndarray) -> float:
  total = int(matrix.sum())
  return float(np.trace(matrix)) / total if total else float('nan')


def rank_misclassified(predictions: Sequence[Prediction]) -> List[Prediction]:
  """Misclassified examples, most confident first (ties by filename)."""
  wrong = [p for p in predictions if not p.correct]
  return sorted(wrong, key=lambda p: (-p.confidence, p.filename))


def class_name(class_names: Sequence[str], class_id: int) -> str:
  return class_names[class_id] if 0 <= class_id < len(class_names) else str(class_id)


def figure_png(fig) -> bytes:
  out = io.BytesIO()
  fig.savefig(out, format='png', dpi=100)
  plt.close(fig)
  return out.getvalue()


@plt.rc_context(_LITERAL_TEXT)
def confusion_matrix_png(matrix: np.ndarray, class_names: Sequence[str]) -> bytes:
  """Heat map of the counts, true classes as rows, predicted classes as columns."""
  n = len(matrix)
  size = max(3.5, 0.6 * n + 2)
  fig, ax = plt.subplots(figsize=(size + 1, size))
  shown = ax.imshow(matrix, cmap='Blues')
  fig.colorbar(shown, ax=ax)
  names = [class_name(class_names, i) for i in range(n)]
  ax.set_xticks(range(n), names, rotation=45, ha='right')
  ax.set_yticks(range(n), names)
  ax.set_xlabel('predicted class')
  ax.set_ylabel('true class')
  ax.set_title('Confusion matrix (eval split)')
  high = matrix.max() / 2 if matrix.size else 0
  for (i, j), count in np.ndenumerate(matrix):
    ax.text(j, i, str(count), ha='center', va='center',
            color='white' if count > high else 'black')
  fig.tight_layout()
  return figure_png(fig)


def thumbnail(image: Optional[bytes]) -> np.ndarray:
  """RGB array of an encoded image, at most THUMBNAIL_SIZE wide and high (grey if unreadable)."""
  try:
    picture = Image.open(io.BytesIO(image or b'')).convert('RGB')
  except Exception:  # pylint: disable=broad-except
    return np.full((THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3), 128, dtype=np.uint8)
  picture.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
  return np.asarray(picture)


@plt.rc_context(_LITERAL_TEXT)
def misclassified_grid_png(examples: Sequence[Prediction], class_names: Sequence[str],
                           columns: int = 4) -> bytes:
  """Images with their true and predicted labels and the model's confidence."""
  columns = min(columns, len(examples))
  rows = math.ceil(len(examples) / columns)
  fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.3 * rows), squeeze=False)
  for ax in axes.flat:
    ax.axis('off')
  for ax, example in zip(axes.flat, examples):
    ax.imshow(thumbnail(example.image))
    ax.set_title(f'true: {class_name(class_names, example.label)}\n'
                 f'pred: {class_name(class_names, example.predicted)} ({example.confidence:.3f})',
                 fontsize=9)
  fig.tight_layout()
  return figure_png(fig)


def report_json(matrix: np.ndarray, class_names: Sequence[str],
                misclassified: Sequence[Prediction], grid_size: int, decision: Decision,
                metrics: Dict[str, Dict[str, float]]) -> Dict:
  """The machine-readable twin of the HTML page."""
  rows = [{'filename': p.filename, 'true': class_name(class_names, p.label),
           'pred': class_name(class_names, p.predicted), 'true_id': p.label,
           'pred_id': p.predicted, 'confidence': p.confidence} for p in misclassified]
  return {
      'class_names': list(class_names),
      'example_count': int(matrix.sum()),
      'confusion_matrix': matrix.tolist(),
      'accuracy': accuracy(matrix),
      'misclassified': rows,
      'grid': rows[:grid_size],
      'blessed': decision.blessed,
      'thresholds': decision.thresholds,
      'failures': decision.failures,
      'baseline': decision.baseline,
      'pushed_to': decision.pushed_to,
      'baseline_not_used': decision.baseline_not_used,
      'unchanged_as': decision.unchanged_as,
      'metrics': metrics,
  }


def _img(png: bytes, alt: str) -> str:
  data = base64.b64encode(png).decode('ascii')
  return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  head = ''.join(f'<th>{html.escape(h)}</th>' for h in header)
  body = ''.join('<tr>' + ''.join(f'<td>{html.escape(c)}</td>' for c in row) + '</tr>'
                 for row in rows)
  return f'<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _number(value: float) -> str:
  return str(int(value)) if float(value).is_integer() and abs(value) >= 2 else f'{value:.4f}'


def _slice_title(slice_name: str, class_names: Sequence[str], label_key: str) -> str:
  """'label:1' -> 'label:1 (dogs)'."""
  key, _, value = slice_name.partition(':')
  if key == label_key and value.isdigit() and int(value) < len(class_names):
    return f'{slice_name} ({class_names[int(value)]})'
  return slice_name


def metrics_table(metrics: Dict[str, Dict[str, float]], class_names: Sequence[str] = (),
                  label_key: str = 'label') -> str:
  """One row per slice (Overall first, true classes named), one column per metric."""
  names = sorted({n for values in metrics.values() for n in values})
  slices = sorted(metrics, key=lambda s: (s != 'Overall', s))
  rows = [[_slice_title(s, class_names, label_key)] +
          [_number(metrics[s][n]) if n in metrics[s] else '' for n in names] for s in slices]
  return _table(['slice'] + names, rows)


def data_validation_html(result: Dict) -> str:
  """DataValidation's result: the anomalies the run trained with (data.validation: warn)
  and the drift from the last accepted span, measure by measure."""
  anomalies = result.get('anomalies', [])
  count = f'{len(anomalies)} anomal{"y" if len(anomalies) == 1 else "ies"}'
  items = ''.join(f'<li>{html.escape(a)}</li>' for a in anomalies)
  parts = [f'<p class="bad">{count} (trained anyway: data.validation: warn)</p><ul>{items}</ul>'
           if anomalies else '<p class="ok">No anomalies.</p>']
  drifts = result.get('drift', [])
  if drifts:
    parts.append(_table(
        ['feature', 'split', 'measure', 'value', 'threshold', 'last accepted span', 'this span'],
        [[d['feature'], d['split'], d['measure'], f'{d["value"]:.3f}' + (' (over)' if
          d['exceeded'] else ''), f'{d["threshold"]:g}', d['previous'], d['current']]
         for d in drifts]))
  if result.get('note'):
    parts.append(f'<p>{html.escape(result["note"])}</p>')
  return ''.join(parts)


def trials_table(trials: Sequence[Dict], chosen_id: Optional[str]) -> str:
  """The Tuner's trials (best first): hyperparameters, validation accuracy, seconds, and
  which one the Trainer used."""
  keys = sorted({k for t in trials for k in t} - {'trial_id', 'score', 'trial_seconds'})
  rows = [['chosen' if t['trial_id'] == chosen_id else '', str(t['trial_id']),
           *(f'{t[k]:.4g}' if isinstance(t.get(k), (int, float)) else str(t.get(k, ''))
             for k in keys),
           _number(t['score']) if t.get('score') is not None else '',
           f'{t["trial_seconds"]:.1f}' if 'trial_seconds' in t else '']
          for t in trials]
  return _table(['', 'trial', *keys, 'val accuracy', 'seconds'], rows)


def _decision_section(decision: Decision) -> str:
  pushed = f' Pushed to {html.escape(decision.pushed_to)}.' if decision.pushed_to else ''
  if decision.unchanged_as:
    pushed = (f' Unchanged, nothing pushed: {html.escape(decision.unchanged_as)} holds the '
              'same model.')
  verdict = (f'<p class="ok">Blessed: yes, the model passed every threshold.{pushed}</p>'
             if decision.blessed else
             '<p class="bad">Blessed: no, the Pusher did not push this model.</p>')
  items = ''.join(f'<li>{html.escape(t)}</li>' for t in decision.thresholds)
  failures = ''.join(f'<li>{html.escape(f)}</li>' for f in decision.failures)
  baseline = html.escape(decision.baseline or 'none (no blessed model yet: '
                         'thresholds relative to a baseline were not checked)')
  if decision.baseline_not_used:
    baseline = html.escape(f'not used: {decision.baseline_not_used} (thresholds relative '
                           'to a baseline were not checked)')
  parts = [verdict, f'<p>Thresholds checked:</p><ul>{items or "<li>none</li>"}</ul>',
           f'<p>Baseline model: {baseline}</p>']
  if failures:
    parts.append(f'<p>Failed:</p><ul class="bad">{failures}</ul>')
  return ''.join(parts)


def _misclassified_section(misclassified: Sequence[Prediction], class_names: Sequence[str],
                           grid_size: int) -> str:
  if not misclassified:
    return '<p>No misclassified images in the eval split.</p>'
  shown = list(misclassified[:grid_size])
  if not shown:  # evaluation.report_misclassified: 0
    return f'<p>{len(misclassified)} misclassified (none shown).</p>'
  rows = [[p.filename, class_name(class_names, p.label), class_name(class_names, p.predicted),
           f'{p.confidence:.4f}'] for p in shown]
  return (f'<p>{len(misclassified)} misclassified; the {len(shown)} most confident:</p>'
          + _img(misclassified_grid_png(shown, class_names), 'most confidently misclassified')
          + _table(['file', 'true', 'predicted', 'confidence'], rows))


_STYLE = ('body{font-family:sans-serif;max-width:1100px;margin:2em auto;}'
          'table{border-collapse:collapse;margin:1em 0;}'
          'td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;}'
          'img{max-width:100%;display:block;margin:1em 0;}'
          '.ok{color:#1a7f37;font-weight:bold;}.bad{color:#cf222e;font-weight:bold;}')


def render_html(title: str, decision: Decision, metrics: Dict[str, Dict[str, float]],
                matrix: np.ndarray, class_names: Sequence[str],
                misclassified: Sequence[Prediction], grid_size: int,
                curves_png: Optional[bytes], model_uri: str = '',
                extra_sections: Sequence[Tuple[str, str]] = ()) -> str:
  """The whole report as one HTML page with its images embedded as base64 PNG.
  `extra_sections`: (heading, HTML body) pairs appended at the end (e.g. TFLite export)."""
  n = len(matrix)
  names = [class_name(class_names, i) for i in range(n)]
  counts = _table(['true \\ predicted'] + names,
                  [[names[i]] + [str(c) for c in matrix[i]] for i in range(n)])
  curves = (_img(curves_png, 'training curves') if curves_png
            else '<p>No training history found.</p>')
  return '\n'.join([
      '<!DOCTYPE html>', '<html><head><meta charset="utf-8">',
      f'<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>',
      f'<h1>{html.escape(title)}</h1>',
      f'<p>Model: {html.escape(model_uri)}</p>' if model_uri else '',
      '<h2>Threshold decision</h2>', _decision_section(decision),
      '<h2>Metrics (TFMA)</h2>', metrics_table(metrics, names),
      f'<h2>Confusion matrix</h2><p>{int(matrix.sum())} eval examples, '
      f'accuracy {accuracy(matrix):.4f}</p>',
      _img(confusion_matrix_png(matrix, names), 'confusion matrix'), counts,
      '<h2>Training curves</h2>', curves,
      '<h2>Most confidently misclassified</h2>',
      _misclassified_section(misclassified, names, grid_size),
      *(f'<h2>{html.escape(heading)}</h2>{body}' for heading, body in extra_sections),
      '</body></html>'])
