"""Image-quality issues and duplicates with cleanvision; leaks across splits.

cleanvision checks every image file (dark, light, blurry, low information, odd aspect
ratio, odd size, grayscale; exact duplicates by MD5, near duplicates by perceptual
hash). A duplicate set that holds both an eval and a train image is a leak: the eval
split then measures memory, not generalization. Near-copies that a perceptual hash
misses (other crop, other encoding) are found as leaks by the pooled backbone features.
"""

import contextlib
import io
from typing import Dict, List, Sequence

import numpy as np
from sklearn.utils.extmath import row_norms  # einsum: no squared copy

from components.insight.findings import (EXACT_DUPLICATE, IMAGE_QUALITY_KINDS, LEAK,
                                         NEAR_DUPLICATE, Finding)

TRAIN, EVAL = 'train', 'eval'
# Cosine similarity of pooled features above which an eval image counts as a copy of
# its nearest train image (a resized, re-encoded copy reached 0.995; overlapping crops of
# one photo up to 0.986, see tests/test_insight.py).
LEAK_SIMILARITY = 0.99
# cleanvision's blurry score has a floor near 0.30 for any image at its 64-pixel working
# size (PIL's FIND_EDGES responds at the image border), so its default threshold (0.29)
# never fires on a blurred photo; 0.35 does (blurred copies scored 0.30, sharp photo crops
# 0.44 and up at the 5th percentile). Every other check keeps cleanvision's defaults.
ISSUE_TYPES = {'dark': {}, 'light': {}, 'odd_aspect_ratio': {}, 'low_information': {},
               'exact_duplicates': {}, 'near_duplicates': {}, 'blurry': {'threshold': 0.35},
               'grayscale': {}, 'odd_size': {}}


def cleanvision_issues(paths: Sequence[str]):
  """Runs cleanvision's default checks on the image files (one process, quietly);
  returns its Imagelab (`issues` DataFrame, `info` with duplicate sets)."""
  from cleanvision import Imagelab  # pylint: disable=g-import-not-at-top  (pandas: slow import)
  with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    lab = Imagelab(filepaths=list(paths), verbose=False)
    lab.find_issues(ISSUE_TYPES, n_jobs=1, verbose=False)
  return lab


def quality_findings(lab, paths: Sequence[str], files: Sequence[str], splits: Sequence[str],
                     class_names: Sequence[str]) -> List[Finding]:
  """One finding per image and quality issue; score = 1 - cleanvision's score.

  Grayscale is reported only when most images are in colour: in a grayscale data set
  (scanned digits, X-rays) it is not a problem."""
  issues = lab.issues.reindex(list(paths))
  findings = []
  for kind in IMAGE_QUALITY_KINDS:
    flag = f'is_{kind}_issue'
    if flag not in issues:
      continue
    flagged = issues[flag].fillna(False).to_numpy(bool)
    if kind == 'grayscale' and flagged.mean() >= 0.5:
      continue
    scores = issues[f'{kind}_score'].to_numpy(float)
    findings += [Finding(kind, files[i], splits[i], class_names[i], float(1.0 - scores[i]))
                 for i in np.flatnonzero(flagged)]
  return findings


def duplicate_findings(lab, paths: Sequence[str], files: Sequence[str], splits: Sequence[str],
                       class_names: Sequence[str]) -> List[Finding]:
  """Each image of a duplicate set after its first (train first) is a finding; an eval
  image with a train image in its set is a leak, named with that train image."""
  index = {path: i for i, path in enumerate(paths)}
  findings, seen = [], set()
  for kind, key in ((EXACT_DUPLICATE, 'exact_duplicates'), (NEAR_DUPLICATE, 'near_duplicates')):
    for group in lab.info.get(key, {}).get('sets', []):
      members = sorted((index[p] for p in group if p in index),
                       key=lambda i: (splits[i] != TRAIN, files[i]))
      first = members[0]
      train = [i for i in members if splits[i] == TRAIN]
      for i in members[1:]:
        if i in seen:  # exact duplicates are near duplicates too: reported once
          continue
        seen.add(i)
        leak = splits[i] == EVAL and train
        other = train[0] if leak else first
        findings.append(Finding(LEAK if leak else kind, files[i], splits[i], class_names[i],
                                1.0, other_file=files[other], other_split=splits[other]))
  return findings


def feature_norms(features: np.ndarray) -> np.ndarray:
  """Row norms for cosines (floored: an all-zero feature has cosine 0 with everything),
  without the squared copy np.linalg.norm makes."""
  return np.maximum(row_norms(features), 1e-12)


def feature_leak_findings(features: np.ndarray, files: Sequence[str], splits: Sequence[str],
                          class_names: Sequence[str], already: Sequence[Finding],
                          threshold: float = LEAK_SIMILARITY) -> List[Finding]:
  """Eval images whose nearest train image (cosine similarity of pooled features) is at
  least `threshold` alike; leaks cleanvision already reported are not repeated."""
  splits_arr = np.asarray(splits)
  train, evals = np.flatnonzero(splits_arr == TRAIN), np.flatnonzero(splits_arr == EVAL)
  if not len(train) or not len(evals):
    return []
  # Cosines from dot products and norms: no normalized copy of the features is made.
  norms = feature_norms(features)
  not_train = splits_arr != TRAIN
  reported: Dict[str, bool] = {f.file: True for f in already if f.kind == LEAK}
  findings = []
  for start in range(0, len(evals), 256):
    block = evals[start:start + 256]
    similarity = features[block] @ features.T
    similarity /= norms[block, None] * norms[None, :]
    similarity[:, not_train] = -np.inf
    nearest = similarity.argmax(axis=1)
    for row, i in enumerate(block):
      best = float(similarity[row, nearest[row]])
      if best >= threshold and files[i] not in reported:
        j = nearest[row]
        findings.append(Finding(LEAK, files[i], splits[i], class_names[i], best,
                                other_file=files[j], other_split=splits[j]))
  return findings
