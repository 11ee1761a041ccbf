"""`make bench`: the lesson-style script vs this pipeline, on the same images, in one run.

  python bench/run.py [--images 2000] [--epochs 20] [--image-size 150] [--data FOLDER]

Every stage runs in its own process (wall time, peak RSS). Prints a markdown table
and writes bench/results/<timestamp>.json; see bench/README.md.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Run as a script, bench/ would come first on sys.path; the project root must.
sys.path[0] = ROOT

# pylint: disable=g-import-not-at-top,wrong-import-position
from bench import data as data_lib, ingest, memory, mlmd, photos, report, scale
from pipeline.configs import POOLINGS, PipelineConfig, TrainingConfig, load_config

RESULTS = os.path.join(ROOT, 'bench', 'results')


class Bench:
  """Runs stages as child processes under one work folder and keeps their results."""

  def __init__(self, work: str, args: argparse.Namespace, weights: str):
    self.work, self.args, self.weights = work, args, weights
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')]))
    self.env = dict(os.environ, PYTHONPATH=path, TF_USE_LEGACY_KERAS='1')

  def config(self, data: str, name: str, **training: Any) -> PipelineConfig:
    """The pipeline config every path shares: augment off (unless `augment=True`),
    always push, no pipeline cache. `precision` sets model.feature_precision."""
    precision = training.pop('precision', PipelineConfig().model.feature_precision)
    overrides = {'pipeline_name': 'bench', 'output': os.path.join(self.work, 'runs', name),
                 'data.path': data, 'model.weights': self.weights,
                 'model.image_size': self.args.image_size, 'model.pooling': self.args.pooling,
                 'model.feature_precision': precision,
                 'training.epochs': self.args.epochs,
                 'training.augment': False, 'evaluation.min_accuracy': 0.0,
                 'enable_cache': False, 'tuning.trials': self.args.tuning_trials,
                 'inference.data': _eval_folder(data)}
    overrides.update({f'training.{k}': v for k, v in training.items()})
    return load_config(overrides=overrides).validate()

  def child(self, label: str, args: List[str]) -> Tuple[Dict[str, Any], memory.ChildResult]:
    out = os.path.join(self.work, f'{label}.json')
    print(f'[bench] {time.strftime("%H:%M:%S")} {label} ...', flush=True)
    child = memory.run_child(args + ['--json', out], os.path.join(self.work, f'{label}.log'),
                             env=self.env)
    with open(out) as f:
      result = json.load(f)
    result.update(process_seconds=child.seconds, peak_rss_mb=child.peak_rss_mb)
    print(f'[bench]   {child.seconds:.0f} s, peak RSS {child.peak_rss_mb:.0f} MB', flush=True)
    return result, child

  def process_tree_stage(self, label: str, args: List[str]) -> Dict[str, Any]:
    """A child whose peak RSS counts the worker processes it starts (sampled)."""
    result, child = self.child(label, args)
    result['peak_rss_mb'] = max([child.peak_rss_mb] + [rss for _, rss in child.samples])
    return result

  def stage(self, label: str, name: str, config: PipelineConfig,
            *options: str) -> Tuple[Dict[str, Any], memory.ChildResult]:
    path = os.path.join(self.work, f'{label}.config.json')
    with open(path, 'w') as f:
      json.dump(config.to_dict(), f, indent=2)
    return self.child(label, ['-m', 'bench.stages', name, '--config', path, *options])

  def baseline(self, data: str, augment: bool = False) -> Dict[str, Any]:
    return self.child('baseline_augmented' if augment else 'baseline', [
        os.path.join(ROOT, 'bench', 'baseline.py'), '--data', data, '--weights', self.weights,
        '--epochs', str(self.args.epochs), '--image-size', str(self.args.image_size),
        '--pooling', self.args.pooling] + (['--augment'] if augment else []))[0]

  def trainer(self, label: str, data: str, name: str, **training: Any) -> Dict[str, Any]:
    """run_fn on the Transform output of the pipeline run called `name`."""
    return self.stage(label, 'trainer', self.config(data, name, **training),
                      '--output', os.path.join(self.work, label))[0]


def _eval_folder(data: str) -> str:
  """Batch inference runs over the validation images (their labels are not read)."""
  folder = os.path.join(data, 'validation')
  return folder if os.path.isdir(folder) else data


def _train_folder(data: str) -> str:
  return os.path.join(data, 'train') if os.path.isdir(os.path.join(data, 'train')) else data


def prepare_data(args: argparse.Namespace, work: str) -> Tuple[str, str]:
  """(full data folder, small data folder for the streaming check)."""
  small = os.path.join(work, 'data-small')
  if args.data:
    args.images = data_lib.count_images(_train_folder(args.data))
    args.stream_images = args.stream_images or args.images // 4
    data_lib.subset_folder(os.path.abspath(args.data), small,
                           min(args.stream_images / max(args.images, 1), 1.0))
    return os.path.abspath(args.data), small
  args.stream_images = args.stream_images or max(args.images // 4, 20)
  full = os.path.join(work, 'data')
  data_lib.write_digit_images(full, args.images, args.images // 2)
  data_lib.write_digit_images(small, args.stream_images, args.stream_images // 2, seed=1)
  return full, small


def pipeline_components(config: PipelineConfig,
                        child: memory.ChildResult) -> Dict[str, Dict[str, Any]]:
  """MLMD timings of the pipeline's components, with the RSS high-water in each window and
  the RSS when it began (what earlier components left in the shared process)."""
  timings = mlmd.component_timings(config.metadata_path)
  for timing in timings.values():
    peak = memory.peak_between(child.samples, timing['start'], timing['end'])
    timing['peak_rss_mb'] = peak or None
    timing['start_rss_mb'] = memory.rss_at(child.samples, timing['start']) or None
  return timings


def streaming(bench: Bench, small: str) -> Dict[str, Any]:
  """Transform, the cached Trainer and predict (with that Trainer's model) on the small
  data set."""
  config = bench.config(small, 'small', feature_cache=True)
  bench.stage('small_upstream', 'upstream', config)
  transform = bench.stage('small_transform', 'transform', config)[0]
  trainer = bench.stage('small_trainer_cached', 'trainer', config, '--output',
                        os.path.join(bench.work, 'small_trainer_cached'))[0]
  predict = bench.stage('small_predict', 'predict', config, '--images', _eval_folder(small),
                        '--model', os.path.join(bench.work, 'small_trainer_cached',
                                                'Format-Serving'))[0]
  return {'transform': transform, 'trainer_cached': trainer, 'predict': predict}


def augmented(bench: Bench, full: str) -> Dict[str, Any]:
  """The lesson's default, augmentation on: baseline script, pipeline, the Trainer through
  the view cache and without the cache."""
  config = bench.config(full, 'full-augmented', augment=True)
  raw = {'baseline': bench.baseline(full, augment=True)}
  raw['pipeline'], child = bench.stage('pipeline_augmented', 'pipeline', config)
  raw['pipeline']['components'] = pipeline_components(config, child)
  raw['trainer_uncached'] = bench.trainer('trainer_augmented_uncached', full, 'full',
                                          augment=True, feature_cache=False)
  return raw


def views_sweep(bench: Bench, data: str, name: str, prefix: str) -> Dict[str, Any]:
  """The view-cache Trainer for every K of --views (augmentation on)."""
  return {str(k): bench.trainer(f'{prefix}views_k{k}', data, name, augment=True,
                                augmented_views=k) for k in bench.args.views}


def harder_task(bench: Bench, work: str) -> Dict[str, Any]:
  """The K sweep on a harder pair of digits (own data, ExampleGen..Transform)."""
  hard = os.path.join(work, 'data-hard')
  data_lib.write_digit_images(hard, bench.args.images, bench.args.images // 2,
                              digits=bench.args.hard_digits, seed=2)
  config = bench.config(hard, 'hard')
  bench.stage('hard_upstream', 'upstream', config)
  bench.stage('hard_transform', 'transform', config)
  return {'digits': list(bench.args.hard_digits),
          'views': views_sweep(bench, hard, 'hard', 'hard_')}


def only_scale(bench: Bench, args: argparse.Namespace, stamp: str) -> Dict[str, Any]:
  """The weights (calibrated on the 1x data) and the scale stage alone."""
  folders = scale.write_data(bench.work, args.images, args.scale)
  if not args.weights:
    bench.stage('weights', 'weights', bench.config(folders[1], 'scale-1x'), '--images',
                _train_folder(folders[1]))
  return {'stamp': stamp, 'work': bench.work,
          'scale': scale.measure(bench, pipeline_components, args.images, args.scale, folders)}


def run(args: argparse.Namespace) -> Dict[str, Any]:
  """All stages; returns the raw results per stage."""
  stamp = time.strftime('%Y%m%d-%H%M%S', time.gmtime())
  work = os.path.join(RESULTS, stamp)
  os.makedirs(work)
  weights = os.path.abspath(args.weights or os.path.join(work, 'weights_notop.h5'))
  bench = Bench(work, args, weights)
  if args.only_scale:
    return only_scale(bench, args, stamp)
  full, small = prepare_data(args, work)
  config = bench.config(full, 'full', feature_cache=True)
  if not args.weights:
    bench.stage('weights', 'weights', config, '--images', _train_folder(full))
  raw: Dict[str, Any] = {'stamp': stamp, 'work': work}
  raw['baseline'] = bench.baseline(full)
  raw['pipeline'], child = bench.stage('pipeline', 'pipeline', config)
  raw['pipeline']['components'] = pipeline_components(config, child)
  raw['transform'] = bench.stage('transform', 'transform', config)[0]
  for name, cache in (('trainer_cached', True), ('trainer_uncached', False)):
    raw[name] = bench.trainer(name, full, 'full', feature_cache=cache, precision='float32')
  raw['trainer_cached_bfloat16'] = bench.trainer('trainer_cached_bfloat16', full, 'full',
                                                 precision='bfloat16')
  raw['feature_pass'] = bench.stage('feature_pass', 'feature_pass', config, '--images',
                                    _train_folder(full))[0]
  raw['augmented'] = augmented(bench, full)
  raw['views'] = views_sweep(bench, full, 'full', '')
  if not args.skip_hard_task:
    raw['hard'] = harder_task(bench, work)
  raw['serving'] = bench.stage('serving', 'serving', config, '--images', full,
                               '--seconds', str(args.serving_seconds))[0]
  raw['predict'] = bench.stage('predict', 'predict', config, '--images', _eval_folder(full))[0]
  if args.tuning_trials:
    raw['tuner'] = bench.stage('tuner', 'tuner', config, '--output',
                               os.path.join(work, 'tuner'))[0]
  if not args.skip_streaming:
    raw['small'] = streaming(bench, small)
  raw['ingest'] = ingest.measure(bench.process_tree_stage, work, args.images)
  if args.photos:
    raw['photos'] = photos.measure(bench, pipeline_components, args.photos)
  if args.scale:
    raw['scale'] = scale.measure(bench, pipeline_components, args.images, args.scale)
  return raw


def drop_heavy(work: str) -> None:
  """Deletes the images, runs, models and weights of a finished run (every folder, and
  the weights file); keeps the stages' logs and JSON."""
  for name in os.listdir(work):
    path = os.path.join(work, name)
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif name == 'weights_notop.h5':
      os.remove(path)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--images', type=int, default=2000,
                      help='built-in data: train images (eval gets half as many)')
  parser.add_argument('--stream-images', type=int, default=0,
                      help='train images of the small streaming run (default: images / 4)')
  parser.add_argument('--epochs', type=int, default=20)
  parser.add_argument('--image-size', type=int, default=150)
  parser.add_argument('--pooling', choices=POOLINGS, default='flatten',
                      help="the head's pooling for every path (model.pooling)")
  parser.add_argument('--data', help='your own folder of class subfolders instead')
  parser.add_argument('--weights', help='a _notop.h5 file (default: calibrated on the data)')
  parser.add_argument('--serving-seconds', type=float, default=5.0,
                      help='time spent measuring each serving figure')
  parser.add_argument('--tuning-trials', type=int, default=10,
                      help='Tuner trials (head search on cached features); 0 skips it')
  parser.add_argument('--views', type=int, nargs='+', default=[1, 2, 4, 8],
                      help='training.augmented_views values of the accuracy sweep')
  parser.add_argument('--hard-digits', type=int, nargs=2, default=(3, 8),
                      help='the harder task of the sweep: two digits that look alike')
  parser.add_argument('--skip-hard-task', action='store_true',
                      help='skip the K sweep on the harder task')
  parser.add_argument('--skip-streaming', action='store_true',
                      help='skip the small-data run of the streaming check')
  parser.add_argument('--photos', type=int, default=40,
                      help='12 MP photos run through the pipeline stored at full size and '
                           'downscaled (0 skips it)')
  parser.add_argument('--scale', type=int, default=0,
                      help='also run the whole pipeline (augmentation on) on N times --images '
                           'next to a 1x run: time per image, peak RSS and disk per '
                           'component at both sizes (0 skips it)')
  parser.add_argument('--only-scale', action='store_true',
                      help='run only the calibrated weights and the --scale stage')
  parser.add_argument('--keep', action='store_true',
                      help='keep the images and pipeline runs (logs are always kept)')
  return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
  args = parse_args(argv)
  if args.scale < 0 or args.scale == 1 or (args.only_scale and not args.scale):
    sys.exit(f'bench: --scale needs N >= 2 (0 skips the stage), got {args.scale}'
             + ('; --only-scale needs it.' if args.only_scale else '.'))
  if args.scale and args.data:
    sys.exit('bench: the scale stage writes its own data; leave out --data or --scale.')
  raw = run(args)
  settings = {'train_images': args.images, 'data': args.data or 'built-in digits',
              'stream_images': args.stream_images, 'epochs': args.epochs,
              'image_size': args.image_size, 'pooling': args.pooling, 'cpus': os.cpu_count(),
              'default_views': TrainingConfig().augmented_views,
              'machine': platform.platform()}
  path = os.path.join(RESULTS, f'{raw["stamp"]}.json')
  with open(path, 'w') as f:  # raw results first: `python -m bench.report` can redo the rest
    json.dump({'settings': settings, 'stages': raw}, f, indent=2)
  figures = report.figures(raw, settings)
  if args.scale:
    settings['scale'] = args.scale
  table = (f'{settings["train_images"]} train images ({settings["data"]}), {args.epochs} epochs, '
           f'{args.image_size} px, {args.pooling} head, {settings["cpus"]} CPUs\n\n'
           + report.table(figures))
  print(table)
  with open(path, 'w') as f:
    json.dump({'settings': settings, 'figures': figures, 'stages': raw}, f, indent=2)
  with open(path[:-len('.json')] + '.md', 'w') as f:
    f.write(table + '\n')
  if not args.keep:
    drop_heavy(raw['work'])
  print(f'\nWrote {path} (logs in {raw["work"]})')


if __name__ == '__main__':
  main()
