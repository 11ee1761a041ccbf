"""The report's "Know your data" section: the DataInsightGen step's findings with
thumbnails (pure HTML; no TensorFlow).

Suspects (label issues, outliers) stand beside typical images of their class (and of the
class the data suggests); duplicate and leak pairs stand side by side; image-quality
findings are a strip of thumbnails. Each kind says what to do about it.
"""

import base64
import html
from typing import Callable, Dict, List, Optional, Sequence

from components.insight.findings import (EXACT_DUPLICATE, KINDS, LABEL_ISSUE, LEAK,
                                         NEAR_DUPLICATE, OUTLIER, Finding, describe_counts)

ADVICE = {
    LABEL_ISSUE: 'The data suggests another class: a model trained without this image '
                 'predicts the suggested class with confidence. Look at it; if the '
                 'suggestion is right, move the file to that class folder.',
    LEAK: 'An eval image with a near-copy in train: the eval split then measures memory, '
          'not generalization, and accuracy looks better than it is. Delete one of the pair '
          'or put both in the same split.',
    EXACT_DUPLICATE: 'The same file twice in one split: it counts twice in training and '
                     'evaluation. Keep one.',
    NEAR_DUPLICATE: 'The same picture twice (resized, re-encoded or slightly edited) in one '
                    'split. Keep one unless the variation is wanted.',
    OUTLIER: 'Unlike the rest of its class (far from its nearest neighbours in the backbone\'s '
             'feature space): a wrong label, an unusual shot, or a kind of picture the class '
             'needs more examples of.',
    'blurry': 'Blurry: remove it if nothing can be recognized.',
    'dark': 'Too dark (a black frame, an unlit shot): remove it if nothing can be seen.',
    'light': 'Too light (overexposed or blank): remove it if nothing can be seen.',
    'low_information': 'Little information (nearly uniform): often a blank or broken capture.',
    'odd_aspect_ratio': 'An unusual aspect ratio: resizing to a square distorts it; crop it.',
    'odd_size': 'Much smaller or larger than the other images.',
    'grayscale': 'Grayscale in a data set of colour images.',
}
TYPICAL_SHOWN = 3
_STYLE = ('<style>.insight-row{display:flex;gap:10px;align-items:flex-start;margin:6px 0;'
          'flex-wrap:wrap;}.insight-row figure{margin:0;width:132px;font-size:11px;'
          'word-break:break-all;}.insight-row img{margin:0 0 2px 0;width:128px;height:auto;'
          'image-rendering:pixelated;}'
          '.insight-row .suspect img{outline:3px solid #cf222e;}'
          '.insight-row .sep{align-self:center;color:#666;font-size:12px;}</style>')


def _figure(thumbnail: Optional[bytes], caption: str, suspect: bool = False) -> str:
  image = (f'<img alt="{html.escape(caption)}" src="data:image/jpeg;base64,'
           f'{base64.b64encode(thumbnail).decode("ascii")}">' if thumbnail
           else '<div>(no thumbnail)</div>')
  return (f'<figure{" class=suspect" if suspect else ""}>{image}'
          f'<figcaption>{html.escape(caption)}</figcaption></figure>')


def _row(items: Sequence[str]) -> str:
  return f'<div class="insight-row">{"".join(items)}</div>'


def section_html(summary: Dict, findings: Sequence[Finding],
                 read_thumbnail: Callable[[str], Optional[bytes]], findings_path: str) -> str:
  """The section body. `summary`: insight.json; `read_thumbnail`: its relative thumbnail
  path -> JPEG bytes (None if missing); `findings_path`: where findings.csv is."""
  thumbnails: Dict[str, str] = summary.get('thumbnails', {})
  typical: Dict[str, List[str]] = summary.get('typical', {})
  shown_per_kind = int(summary.get('shown_per_kind', 12))

  def picture(file: str) -> Optional[bytes]:
    return read_thumbnail(thumbnails[file]) if file in thumbnails else None

  def typical_of(class_name: str, label: str) -> List[str]:
    return [_figure(picture(f), f'typical {label}: {f}')
            for f in typical.get(class_name, [])[:TYPICAL_SHOWN]]

  counts = summary.get('counts', {})
  parts = [_STYLE, f'<p>{summary.get("num_images", 0)} train and eval images checked: '
                   f'{html.escape(describe_counts(counts))}. Nothing was removed; every '
                   f'finding is a row of <code>{html.escape(findings_path)}</code>.</p>']
  by_kind: Dict[str, List[Finding]] = {}
  for finding in findings:
    by_kind.setdefault(finding.kind, []).append(finding)
  for kind in KINDS:
    rows = by_kind.get(kind, [])
    if not rows:
      continue
    shown = rows[:shown_per_kind]
    more = f' (the first {len(shown)} of {len(rows)})' if len(rows) > len(shown) else ''
    parts.append(f'<h3>{html.escape(kind)}: {len(rows)}{more}</h3>'
                 f'<p>{html.escape(ADVICE.get(kind, ""))}</p>')
    if kind in (LABEL_ISSUE, OUTLIER):
      for f in shown:
        caption = (f'{f.file} ({f.split}) filed as {f.class_name}'
                   + (f', looks like {f.suggested_class}' if f.suggested_class else '')
                   + f'; score {f.score:.2f}')
        items = [_figure(picture(f.file), caption, suspect=True),
                 '<span class="sep">vs</span>', *typical_of(f.class_name, f.class_name)]
        if f.suggested_class:
          items += ['<span class="sep">|</span>',
                    *typical_of(f.suggested_class, f.suggested_class)]
        parts.append(_row(items))
    elif kind in (LEAK, EXACT_DUPLICATE, NEAR_DUPLICATE):
      for f in shown:
        parts.append(_row([
            _figure(picture(f.file), f'{f.file} ({f.split}, {f.class_name})', suspect=True),
            f'<span class="sep">same picture as<br>(score {f.score:.3f})</span>',
            _figure(picture(f.other_file), f'{f.other_file} ({f.other_split})')]))
    else:
      parts.append(_row([_figure(picture(f.file), f'{f.file} ({f.split}); score {f.score:.2f}',
                                 suspect=True) for f in shown]))
  return ''.join(parts)
