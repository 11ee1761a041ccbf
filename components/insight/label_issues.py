"""Likely label errors (cleanlab) and images unlike their class (cleanlab's outlier scores).

Out-of-fold probabilities come from a cross-validated logistic regression on the pooled
backbone features: each image is scored by a model that never saw it, as cleanlab's
confident learning needs.
"""

import warnings
from typing import List, Sequence

import numpy as np
import sklearn
from cleanlab.filter import find_label_issues
from cleanlab.outlier import OutOfDistribution
from cleanlab.rank import get_label_quality_scores
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from components.insight.findings import LABEL_ISSUE, OUTLIER, Finding

MAX_FOLDS = 5
# newton-cg fits in the features' float32; lbfgs copies them to float64 (the step's rise
# at 30,000 x 768 features: 705 MB with lbfgs, 248 MB with newton-cg, measured ad hoc).
# It converges to the float64 fit's optimum (probabilities within 1e-6); lbfgs stopped
# short of it by up to 0.09.
SOLVER = 'newton-cg'
# scikit-learn's kNN (under cleanlab's outlier scores) computes distances in chunks of up
# to `working_memory` MB, 1 GB by default: at 30,000 images that chunk was 1.45 GB of the
# step's memory high-water; 64 MB chunks are as fast (measured ad hoc).
KNN_WORKING_MEMORY_MB = 64
# An outlier's mean distance to its class's nearest neighbours is this many
# interquartile ranges above the class's third quartile (Tukey's "far out").
OUTLIER_FENCE = 3.0


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, num_classes: int,
                              seed: int = 0) -> np.ndarray:
  """[N, num_classes] probabilities, each row from a fold that did not train on it
  (2 to 5 stratified folds, as many as the smallest class allows)."""
  counts = np.bincount(labels, minlength=num_classes)
  present = np.flatnonzero(counts)
  folds = int(np.clip(counts[present].min(), 2, MAX_FOLDS))
  # copy=False: cross_val_predict hands each fold a fresh copy of its rows already.
  classifier = make_pipeline(StandardScaler(copy=False),
                             LogisticRegression(C=0.1, max_iter=2000, solver=SOLVER))
  with warnings.catch_warnings():  # a class smaller than the folds: sklearn warns, copes
    warnings.simplefilter('ignore', UserWarning)
    predicted = cross_val_predict(
        classifier, features, labels, method='predict_proba',
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
  probabilities = np.zeros((len(labels), num_classes))
  probabilities[:, present] = predicted
  return probabilities


def label_issue_findings(features: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                         files: Sequence[str], splits: Sequence[str]) -> List[Finding]:
  """cleanlab's find_label_issues over every split; score = 1 - label quality."""
  num_classes = len(class_names)
  if len(np.unique(labels)) < 2 or len(labels) < 2 * num_classes:
    return []  # nothing to compare a label with
  probabilities = out_of_fold_probabilities(features, labels, num_classes)
  # n_jobs=1: cleanlab's default forks a pool of this process (TensorFlow's threads and
  # all) per physical core, for a per-class step that takes milliseconds.
  issues = find_label_issues(labels, probabilities, filter_by='prune_by_noise_rate', n_jobs=1)
  quality = get_label_quality_scores(labels, probabilities, method='self_confidence')
  return [Finding(LABEL_ISSUE, files[i], splits[i], class_names[labels[i]],
                  float(1.0 - quality[i]),
                  suggested_class=class_names[int(probabilities[i].argmax())])
          for i in np.flatnonzero(issues)]


def outlier_findings(features: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                     files: Sequence[str], splits: Sequence[str],
                     k: int = 5) -> List[Finding]:
  """Per class: cleanlab's OutOfDistribution kNN score of each image among its class;
  an image is an outlier far outside its class's spread (OUTLIER_FENCE)."""
  findings = []
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    if len(members) < k + 3:
      continue
    ood = OutOfDistribution(params={'k': k})
    with sklearn.config_context(working_memory=KNN_WORKING_MEMORY_MB):
      scores = ood.fit_score(features=features[members], verbose=False)
    # cleanlab's score is exp(-t * mean kNN distance): back to distances, the scale the
    # fence works in.
    distance = -np.log(np.clip(scores, 1e-300, 1.0))
    q1, q3 = np.percentile(distance, [25, 75])
    fence = q3 + OUTLIER_FENCE * max(q3 - q1, 1e-12)
    for index, member in enumerate(members):
      if distance[index] > fence:
        findings.append(Finding(OUTLIER, files[member], splits[member],
                                class_names[label], float(1.0 - scores[index])))
  return findings
