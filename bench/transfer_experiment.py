"""Proof of transfer, offline: do weights pretrained on some digits help on others?

  TF_USE_LEGACY_KERAS=1 python bench/transfer_experiment.py --per-class 5 20

1. Pretrains InceptionV3 on scikit-learn's digits --source-digits (all their
   images; tools/pretrain.py) and saves the backbone as a `_notop.h5` file.
2. Writes the --target-digits as train/ (the first K images per class, K from
   --per-class) + validation/ (a fixed held-out set: the images after the
   largest K), and runs the whole pipeline once per backbone variant and K:
     none        Keras' random initialisation, frozen
     calibrated  random kernels, BatchNorm statistics from the K target images
                 per class (write_calibrated_weights; the project's offline default)
     pretrained  the pretrained backbone, frozen
     fine-tuned  pretrained, then unfrozen from --fine-tune-from for a few epochs
3. Prints a markdown table of the Evaluator's accuracy on the held-out set and
   writes bench/results/transfer_experiment.json (after every run).

Each cell is one draw of K images and one seed: with K=5 a single draw varies by
+-0.05 to 0.2 (see the README); compare variants within a column.
"""

import argparse
import json
import os
import shutil
import sys
import time
from typing import Dict, List, Sequence

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging

from pipeline import local_runner
from tools import demo_data, pretrain, run_summary as report
from tools.class_folder import load_class_folder
from pipeline.configs import load_config
from trainer import model as model_lib

VARIANTS = ('none', 'calibrated', 'pretrained', 'fine-tuned')


def write_target(root: str, digits: Sequence[int], per_class: int, holdout_from: int) -> str:
  """<root>/k<K>/data/{train,validation}/<digit>/: the first K images of each digit train,
  those from `holdout_from` on evaluate (the same set for every K); returns k<K>/."""
  everything = os.path.join(root, 'target_all')
  demo_data.write_digits(everything, digits)
  folder = os.path.join(root, f'k{per_class}')
  shutil.rmtree(folder, ignore_errors=True)  # also the pipeline cache of an older run
  for digit in digits:
    name = demo_data.DIGIT_NAMES[digit]
    files = sorted(os.listdir(os.path.join(everything, name)))
    for split, chosen in (('train', files[:per_class]), ('validation', files[holdout_from:])):
      os.makedirs(os.path.join(folder, 'data', split, name))
      for f in chosen:
        shutil.copy(os.path.join(everything, name, f),
                    os.path.join(folder, 'data', split, name, f))
  return folder


def variant_overrides(variant: str, args: argparse.Namespace, folder: str,
                      pretrained: str) -> Dict[str, object]:
  """The config overrides of one variant (weights file, fine-tuning)."""
  overrides = {}
  if variant == 'none':
    overrides['model.weights'] = 'none'
  elif variant == 'calibrated':
    calibrated = os.path.join(folder, 'calibrated_notop.h5')
    images = load_class_folder(os.path.join(folder, 'data', 'train'), args.image_size).images
    model_lib.write_calibrated_weights(calibrated, images)
    overrides['model.weights'] = calibrated
  else:
    overrides['model.weights'] = pretrained
  if variant == 'fine-tuned':
    overrides.update({'training.fine_tune_from': args.fine_tune_from,
                      'training.fine_tune_epochs': args.fine_tune_epochs,
                      'training.fine_tune_learning_rate': args.fine_tune_learning_rate})
  return overrides


def run_variant(variant: str, args: argparse.Namespace, folder: str,
                pretrained: str) -> Dict[str, object]:
  """Runs the whole pipeline for one variant; returns accuracy and runtime.

  All variants of one K share the pipeline's output folder: ExampleGen,
  StatisticsGen, SchemaGen and Transform come from the pipeline cache after the
  first variant; Trainer, Evaluator and Pusher run for each.
  """
  start = time.time()
  overrides = {
      'pipeline_name': 'transfer-experiment', 'data.path': os.path.join(folder, 'data'),
      'output': os.path.join(folder, 'pipeline'), 'model.image_size': args.image_size,
      'training.epochs': args.epochs, 'training.augment': False,
      'evaluation.min_accuracy': 0.0,
      **variant_overrides(variant, args, folder, pretrained)}
  config = load_config(overrides=overrides)
  local_runner.run(config)
  summary = report.latest_run_summary(config)
  overall = summary.metrics['Overall']
  return {'accuracy': overall['sparse_categorical_accuracy'],
          'eval_examples': int(overall.get('example_count', 0)),
          'seconds': round(time.time() - start, 1), 'executions': summary.executions}


def variant_label(variant: str, args: argparse.Namespace) -> str:
  source = ','.join(map(str, args.source_digits))
  return {
      'none': "random init ('none'), frozen",
      'calibrated': 'random, BatchNorm calibrated on the target images, frozen',
      'pretrained': f'pretrained on digits {source}, frozen',
      'fine-tuned': (f'pretrained on digits {source} + fine-tuned from {args.fine_tune_from} '
                     f'({args.fine_tune_epochs} epochs, lr {args.fine_tune_learning_rate:g})'),
  }[variant]


def format_table(rows: List[Dict[str, object]], args: argparse.Namespace) -> str:
  """Markdown: one row per variant, one column per labelled images per class."""
  ks = sorted({r['per_class'] for r in rows})
  lines = ['| backbone | ' + ' | '.join(f'{k} / class' for k in ks) + ' |',
           '|---' * (len(ks) + 1) + '|']
  for variant in dict.fromkeys(r['variant'] for r in rows):
    cells = []
    for k in ks:
      row = next((r for r in rows if r['variant'] == variant and r['per_class'] == k), None)
      cells.append('' if row is None else row.get('note') or f"{row['accuracy']:.3f}")
    lines.append(f'| {variant_label(variant, args)} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def parse_args(argv: List[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--source-digits', type=int, nargs='+', default=list(range(2, 10)))
  parser.add_argument('--target-digits', type=int, nargs='+', default=[0, 1])
  parser.add_argument('--per-class', type=int, nargs='+', default=[5, 20],
                      help='labelled target images per class (several values: one run each)')
  parser.add_argument('--variants', nargs='+', choices=VARIANTS, default=list(VARIANTS))
  parser.add_argument('--image-size', type=int, default=75)
  parser.add_argument('--pretrain-epochs', type=int, default=2)
  parser.add_argument('--pretrained', help='reuse this _notop.h5 instead of pretraining')
  parser.add_argument('--epochs', type=int, default=20, help='head epochs on the target')
  parser.add_argument('--fine-tune-from', default='mixed6')
  parser.add_argument('--fine-tune-epochs', type=int, default=5)
  parser.add_argument('--fine-tune-learning-rate', type=float, default=1e-5)
  parser.add_argument('--workdir', default='runs/transfer_experiment')
  parser.add_argument('--results', default='bench/results/transfer_experiment.json')
  args = parser.parse_args(argv)
  if set(args.source_digits) & set(args.target_digits):
    parser.error('--source-digits and --target-digits must not overlap')
  if len(args.target_digits) < 2 or min(args.per_class) < 1:
    parser.error('need at least two --target-digits and --per-class >= 1')
  return args


def pretrained_weights(args: argparse.Namespace) -> Dict[str, object]:
  """Pretrains on the source digits (or reuses --pretrained); returns what was done."""
  if args.pretrained:
    return {'path': args.pretrained, 'reused': True}
  source = os.path.join(args.workdir, 'source')
  demo_data.write_digits(source, args.source_digits)
  result = pretrain.pretrain(source, os.path.join(args.workdir, 'pretrained_notop.h5'),
                             image_size=args.image_size, epochs=args.pretrain_epochs)
  return {'path': result.path, 'classes': result.class_names, 'train_images': result.num_train,
          'holdout_images': result.num_holdout, 'holdout_accuracy': result.holdout_accuracy,
          'holdout_accuracy_tracked_bn': result.tracked_accuracy,
          'seconds': round(result.seconds, 1)}


def save_results(args: argparse.Namespace, source: Dict[str, object],
                 rows: List[Dict[str, object]], seconds: float) -> str:
  """Writes the results JSON (after every run, so partial runs leave results); returns the table."""
  table = format_table(rows, args)
  os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
  with open(args.results, 'w') as f:
    json.dump({'args': vars(args), 'pretraining': source, 'rows': rows, 'table': table,
               'seconds': round(seconds, 1)}, f, indent=2)
  return table


def main(argv: List[str]) -> int:
  args = parse_args(argv)
  logging.set_verbosity(logging.WARNING)
  start = time.time()
  os.makedirs(args.workdir, exist_ok=True)
  source = pretrained_weights(args)
  rows = []
  for k in sorted(args.per_class):
    folder = os.path.abspath(
        write_target(args.workdir, args.target_digits, k, max(args.per_class)))
    for variant in args.variants:
      row = {'per_class': k, 'variant': variant}
      row.update(run_variant(variant, args, folder, os.path.abspath(source['path'])))
      print(f'[{time.time() - start:.0f} s] K={k} {variant}: {row}', flush=True)
      rows.append(row)
      table = save_results(args, source, rows, time.time() - start)  # partial results too
  print(f'\nTarget digits {args.target_digits}, held-out accuracy '
        f'(source digits {args.source_digits}, {args.image_size}px):\n\n{table}\n')
  print(f'Total {time.time() - start:.0f} s; results in {args.results}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
