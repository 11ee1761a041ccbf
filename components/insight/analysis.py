"""Every check over the examples' features and files: the findings and what the report
shows beside them (each class's typical images)."""

import dataclasses
from typing import Dict, List, Sequence

import numpy as np

from components.insight import image_issues, label_issues
from components.insight.features import Examples
from components.insight.findings import Finding, sort_findings

TYPICAL_PER_CLASS = 4


@dataclasses.dataclass
class Insight:
  findings: List[Finding]
  typical: Dict[str, List[str]]  # class name -> files closest to the class's mean feature


def typical_images(examples: Examples, class_names: Sequence[str], exclude: set,
                   count: int = TYPICAL_PER_CLASS) -> Dict[str, List[str]]:
  """Per class, the `count` images nearest (cosine) to the class's mean pooled feature,
  among those with no finding: what a suspect is compared with."""
  features = examples.features
  norms = image_issues.feature_norms(features)
  typical = {}
  for label, name in enumerate(class_names):
    members = np.array([i for i in np.flatnonzero(examples.labels == label)
                        if examples.files[i] not in exclude], np.int64)
    if not len(members):
      continue
    # The members' mean unit vector and their cosines to it, without a normalized copy.
    weights = np.zeros(len(features), features.dtype)
    weights[members] = 1.0 / (norms[members] * len(members))
    similarity = (features @ (weights @ features))[members] / norms[members]
    typical[name] = [examples.files[members[j]] for j in np.argsort(-similarity)[:count]]
  return typical


def analyze(examples: Examples, class_names: Sequence[str]) -> Insight:
  """Label issues, outliers, image quality, duplicates and leaks of `examples`."""
  names = [class_names[label] if 0 <= label < len(class_names) else str(label)
           for label in examples.labels]
  files, splits = examples.files, examples.splits
  findings = label_issues.label_issue_findings(examples.features, examples.labels,
                                               class_names, files, splits)
  findings += label_issues.outlier_findings(examples.features, examples.labels, class_names,
                                            files, splits)
  if len(examples):
    lab = image_issues.cleanvision_issues(examples.local_paths)
    findings += image_issues.quality_findings(lab, examples.local_paths, files, splits, names)
    findings += image_issues.duplicate_findings(lab, examples.local_paths, files, splits, names)
  findings += image_issues.feature_leak_findings(examples.features, files, splits, names,
                                                 findings)
  findings = sort_findings(findings)
  return Insight(findings, typical_images(examples, class_names, {f.file for f in findings}))
