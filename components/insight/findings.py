"""Findings: one row per problem found in the data, written as `findings.csv`.

A finding names a file (relative to the data folder, as ExampleGen recorded it), its
split and class, its kind and a score; pairs (duplicates, leaks) also name the other
file. Nothing is removed: the table is for people to look at and act on.
"""

import collections
import csv
import dataclasses
import io
from typing import Dict, Iterable, List, Optional, Sequence

# Kinds, in the order the report and the console list them.
LABEL_ISSUE = 'label_issue'
OUTLIER = 'outlier'
LEAK = 'leak'
EXACT_DUPLICATE = 'exact_duplicate'
NEAR_DUPLICATE = 'near_duplicate'
IMAGE_QUALITY_KINDS = ('blurry', 'dark', 'light', 'low_information', 'odd_aspect_ratio',
                       'odd_size', 'grayscale')
KINDS = (LABEL_ISSUE, LEAK, EXACT_DUPLICATE, NEAR_DUPLICATE, OUTLIER, *IMAGE_QUALITY_KINDS)

COLUMNS = ('kind', 'file', 'split', 'class_name', 'score', 'suggested_class', 'other_file',
           'other_split')


@dataclasses.dataclass
class Finding:
  """One problem. `score`: how sure (0..1, higher = more likely a real problem)."""
  kind: str
  file: str
  split: str
  class_name: str
  score: float
  suggested_class: str = ''  # label issues: the class the data suggests
  other_file: str = ''       # duplicates and leaks: the other image of the pair
  other_split: str = ''


def to_csv(findings: Sequence[Finding]) -> str:
  out = io.StringIO()
  writer = csv.writer(out)
  writer.writerow(COLUMNS)
  for f in findings:
    row = dataclasses.asdict(f)
    row['score'] = f'{f.score:.4f}'
    writer.writerow([row[c] for c in COLUMNS])
  return out.getvalue()


def from_csv(text: str) -> List[Finding]:
  return [Finding(**{**row, 'score': float(row['score'])})
          for row in csv.DictReader(io.StringIO(text))]


def sort_findings(findings: Iterable[Finding]) -> List[Finding]:
  """By kind (KINDS order), then most certain first, then file."""
  order = {kind: i for i, kind in enumerate(KINDS)}
  return sorted(findings, key=lambda f: (order.get(f.kind, len(order)), -f.score, f.file))


def counts(findings: Iterable[Finding]) -> Dict[str, int]:
  """Kind -> number of findings, in KINDS order, kinds without findings left out."""
  counter = collections.Counter(f.kind for f in findings)
  return {kind: counter[kind] for kind in KINDS if counter[kind]}


def describe_counts(kind_counts: Dict[str, int]) -> str:
  """'3 label_issue, 1 leak' (or 'no findings')."""
  return ', '.join(f'{n} {kind}' for kind, n in kind_counts.items()) or 'no findings'


class GateError(RuntimeError):
  """A data gate of the config was exceeded: the run stops before the Trainer."""


def check_gates(findings: Sequence[Finding], num_images: int, max_eval_leaks: Optional[int],
                max_label_issue_fraction: Optional[float],
                table: str = 'findings.csv') -> None:
  """Raises GateError (one line naming `table`) when a gate that is set (not None) is
  exceeded."""
  leaks = sum(f.kind == LEAK for f in findings)
  if max_eval_leaks is not None and leaks > max_eval_leaks:
    raise GateError(f'{leaks} eval images have a near-copy in train (data.max_eval_leaks: '
                    f'{max_eval_leaks}); see the leak rows of {table}.')
  issues = sum(f.kind == LABEL_ISSUE for f in findings)
  fraction = issues / num_images if num_images else 0.0
  if max_label_issue_fraction is not None and fraction > max_label_issue_fraction:
    raise GateError(f'{issues} of {num_images} images ({fraction:.1%}) look mislabeled '
                    f'(data.max_label_issue_fraction: {max_label_issue_fraction}); see the '
                    f'label_issue rows of {table}.')
