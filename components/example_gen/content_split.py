"""The train/eval split decided by image content, stratified by class.

Identical bytes always land in the same split (a photo saved twice under two names
cannot sit in train and eval), and each class sends about `eval_percent` of its
distinct images to eval: within a class, distinct contents are ranked by their hash
and the lowest-ranked `eval_count(n)` go to eval. Adding an image moves at most one
other image across the boundary. A picture filed under two classes goes to train (it
cannot be scored against one label, and no class loses its only train image to it).
Groups of identical files are reported.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from typing import Dict, Iterable, List, NamedTuple, Optional


class Hashed(NamedTuple):
  """One readable file (or TFRecord example): its key, class, fixed split and content hash."""
  key: str                # relpath (folders) or filename/position (TFRecords)
  class_name: str
  split: Optional[str]    # from a pre-split layout, else None
  digest: str


def content_digest(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()[:32]


def eval_count(distinct: int, eval_percent: int) -> int:
  """How many of a class's distinct images go to eval: about `eval_percent`, at least
  one and never all (a class of one image has none)."""
  if eval_percent <= 0 or distinct < 2:
    return 0
  return min(distinct - 1, max(1, round(distinct * eval_percent / 100)))


@dataclasses.dataclass
class SplitPlan:
  """The split of every hashed key, the groups of keys with identical content, and the
  groups a pre-split layout put in both splits (leaks: kept, the user's split rules)."""
  splits: Dict[str, str]
  duplicates: List[List[str]]
  leaks: List[List[str]] = dataclasses.field(default_factory=list)

  def split_of(self, key: str, fixed: Optional[str] = None) -> str:
    return fixed or self.splits.get(key, 'train')


def plan_splits(items: Iterable[Hashed], eval_percent: int) -> SplitPlan:
  """Stratified content split of the items without a fixed split; duplicate groups."""
  items = sorted(items)
  by_digest: Dict[str, List[Hashed]] = collections.defaultdict(list)
  for item in items:
    by_digest[item.digest].append(item)
  digests_of: Dict[str, List[str]] = collections.defaultdict(list)
  split_of_digest: Dict[str, str] = {}
  for digest, group in sorted(by_digest.items()):
    classes = sorted({i.class_name for i in group if i.split is None})
    if len(classes) > 1:  # the same picture filed under two classes: train, never starved
      split_of_digest[digest] = 'train'
    for class_name in classes:
      digests_of[class_name].append(digest)
  for digests in digests_of.values():  # each list is in hash order
    wanted = eval_count(len(digests), eval_percent)
    for digest in digests:
      if digest not in split_of_digest:
        split_of_digest[digest] = 'eval' if wanted > 0 else 'train'
        wanted -= split_of_digest[digest] == 'eval'
  splits = {i.key: split_of_digest[i.digest] for i in items if i.split is None}
  groups = [g for g in by_digest.values() if len(g) > 1]
  duplicates = sorted(sorted(i.key for i in g) for g in groups)
  leaks = sorted(sorted(i.key for i in g) for g in groups if len({i.split for i in g}) > 1
                 and all(i.split for i in g))
  return SplitPlan(splits, duplicates, leaks)
