"""`transfer-pipeline`: run the pipeline, predict with a pushed model, write demo data.

Only the standard library is imported at module level: TensorFlow must not be
imported before TF_USE_LEGACY_KERAS=1 is in the environment (see `main`).
"""

import argparse
import os
import sys
from typing import List, Optional


def _apply_beam_flags(config, args: argparse.Namespace):
  """--beam-preset replaces the config's Beam arguments; --beam-arg adds to them."""
  from kubeflow import beam  # pylint: disable=g-import-not-at-top
  from pipeline.configs import ConfigError  # pylint: disable=g-import-not-at-top
  if args.beam_option and not args.beam_preset:
    raise ConfigError('--beam-option needs --beam-preset.')
  if args.beam_preset:
    try:
      config.beam_pipeline_args = beam.beam_pipeline_args(
          args.beam_preset, **beam.parse_options(args.beam_option))
    except ValueError as e:
      raise ConfigError(str(e)) from e
  config.beam_pipeline_args = list(config.beam_pipeline_args) + args.beam_arg
  return config


def _add_beam_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument('--beam-preset', help='Beam runner preset for StatisticsGen, Transform '
                      'and Evaluator: in_memory, multi_processing, dataflow, flink, spark')
  parser.add_argument('--beam-option', action='append', default=[], metavar='NAME=VALUE',
                      help='preset option, e.g. num_workers=2 or region=us-central1 (repeatable)')
  parser.add_argument('--beam-arg', action='append', default=[], metavar='ARG',
                      help='extra raw Beam argument, e.g. --beam-arg=--experiments=x (repeatable)')


def _cmd_run(args: argparse.Namespace) -> int:
  from pipeline import local_runner, report, preflight  # pylint: disable=g-import-not-at-top
  from pipeline.configs import load_config  # pylint: disable=g-import-not-at-top
  config = load_config(args.config, {
      'data.path': args.data, 'output': args.output, 'model.weights': args.weights,
      'training.epochs': args.epochs, 'model.image_size': args.image_size,
      'training.augment': False if args.no_augment else None,
      'inference.data': args.infer_data,
  })
  _apply_beam_flags(config, args).validate()
  preflight.check(config)
  print(f'Running pipeline {config.pipeline_name!r} on {config.data.path} -> {config.output}')
  print(f'Backbone weights: {preflight.describe_weights(config.model.weights)}')
  print(f'Beam: {" ".join(config.beam_pipeline_args)}')
  local_runner.run(config)
  print(report.format_summary(report.latest_run_summary(config)))
  return 0


def _cmd_predict(args: argparse.Namespace) -> int:
  from pipeline import batch_predict  # pylint: disable=g-import-not-at-top
  return batch_predict.command(args.model, args.inputs, args.output, args.batch_size,
                               args.max_image_pixels)


def _cmd_demo_data(args: argparse.Namespace) -> int:
  from pipeline import demo_data  # pylint: disable=g-import-not-at-top
  counts = demo_data.write_digits(args.output, args.digits)
  print(f'Wrote {sum(counts.values())} digit images to {args.output}: {counts}')
  return 0


def _cmd_calibrate_weights(args: argparse.Namespace) -> int:
  from pipeline.class_folder import load_class_folder  # pylint: disable=g-import-not-at-top
  from trainer import model as model_lib  # pylint: disable=g-import-not-at-top
  images = load_class_folder(args.data, args.image_size, args.per_class).images
  model_lib.write_calibrated_weights(args.output, images)
  print(f'Wrote random InceptionV3 weights with BatchNorm statistics from {len(images)} '
        f'images of {args.data} to {args.output}')
  return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
  from pipeline import pretrain  # pylint: disable=g-import-not-at-top
  pretrain.pretrain(args.data, args.output, image_size=args.image_size, epochs=args.epochs,
                    batch_size=args.batch_size, learning_rate=args.learning_rate,
                    holdout_percent=args.holdout_percent, per_class=args.per_class,
                    seed=args.seed)
  return 0


def _cmd_compile_kubeflow(args: argparse.Namespace) -> int:
  from kubeflow import runner  # pylint: disable=g-import-not-at-top
  from pipeline.configs import ConfigError, load_config  # pylint: disable=g-import-not-at-top
  config = load_config(args.config, {'data.path': args.data, 'output': args.pipeline_output,
                                     'data.class_names': args.class_names})
  try:
    path = runner.compile_pipeline(_apply_beam_flags(config, args).validate(), args.output,
                                   args.image)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  print(f'Wrote Kubeflow Pipelines v2 spec {path} (image {args.image})')
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='transfer-pipeline', description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest='command', required=True)

  run = sub.add_parser('run', help='run the whole pipeline locally')
  run.add_argument('--data', help='folder of class subfolders of images, or of TFRecords')
  run.add_argument('--output', help='folder for everything the run writes (default runs/default)')
  run.add_argument('--weights', help="'imagenet', 'none' or path/to/inception_v3_..._notop.h5")
  run.add_argument('--config', help='YAML file with the settings of pipeline/configs.py')
  run.add_argument('--epochs', type=int, help='training epochs (overrides the config)')
  run.add_argument('--image-size', type=int, help='square input size (default 150, >= 75)')
  run.add_argument('--no-augment', action='store_true', help='turn data augmentation off')
  run.add_argument('--infer-data', metavar='FOLDER', help='unlabeled images: batch inference '
                   '(BulkInferrer) with the blessed model, written as predictions.csv')
  _add_beam_flags(run)
  run.set_defaults(func=_cmd_run)

  predict = sub.add_parser('predict', help='classify image files and folders with a pushed model')
  predict.add_argument('--model', required=True,
                       help='serving_model/<model_name> folder (newest version), a version '
                       'folder, or a model.tflite file')
  predict.add_argument('inputs', nargs='+', metavar='FOLDER_OR_FILE',
                       help='image files and folders (walked recursively)')
  predict.add_argument('--output', help='predictions.csv or .jsonl (default: CSV on stdout)')
  predict.add_argument('--batch-size', type=int, default=32, help='images per model call')
  predict.add_argument('--max-image-pixels', type=int,
                       help='refuse larger images (default: data.max_image_pixels\'s)')
  predict.set_defaults(func=_cmd_predict)

  kfp = sub.add_parser('compile-kubeflow', help='compile a Kubeflow Pipelines / Vertex v2 spec')
  kfp.add_argument('--config', help='YAML config (pipeline root under `output`, e.g. gs://...)')
  kfp.add_argument('--data', help='data folder as the pipeline will see it')
  kfp.add_argument('--pipeline-output', help='output root of the pipeline run (e.g. gs://bucket/runs)')
  kfp.add_argument('--class-names', nargs='+', help='class names in label order (remote data)')
  kfp.add_argument('--image', default='transfer-pipeline:0.1.0', help='pipeline container image')
  kfp.add_argument('--output', default='kubeflow/build/pipeline.json', help='JSON file to write')
  _add_beam_flags(kfp)
  kfp.set_defaults(func=_cmd_compile_kubeflow)

  calibrate = sub.add_parser(
      'calibrate-weights', help='offline stand-in for pretrained weights: random kernels, '
      'BatchNorm statistics from your images (no labels used)')
  calibrate.add_argument('--data', required=True, help='folder of class subfolders')
  calibrate.add_argument('--output', required=True, help='path of the _notop.h5 file to write')
  calibrate.add_argument('--image-size', type=int, default=150)
  calibrate.add_argument('--per-class', type=int, default=32)
  calibrate.set_defaults(func=_cmd_calibrate_weights)

  pre = sub.add_parser(
      'pretrain', help='offline stand-in for ImageNet weights: train InceptionV3 on a source '
      'task of class folders, save its top-less weights (_notop.h5) for --weights')
  pre.add_argument('--data', required=True, help='folder of class subfolders (the source task)')
  pre.add_argument('--output', required=True, help='path of the _notop.h5 file to write')
  pre.add_argument('--image-size', type=int, default=75, help='square input size (>= 75)')
  pre.add_argument('--epochs', type=int, default=5)
  pre.add_argument('--batch-size', type=int, default=32)
  pre.add_argument('--learning-rate', type=float, default=1e-3, help='Adam learning rate')
  pre.add_argument('--holdout-percent', type=int, default=10,
                   help='share of each class kept out of training to report source accuracy')
  pre.add_argument('--per-class', type=int, default=0, help='at most this many images per class')
  pre.add_argument('--seed', type=int, default=0)
  pre.set_defaults(func=_cmd_pretrain)

  demo = sub.add_parser('demo-data', help="write scikit-learn's digits as class-folder PNGs")
  demo.add_argument('--output', default='data/digits')
  demo.add_argument('--digits', type=int, nargs='+', default=[0, 1])
  demo.set_defaults(func=_cmd_demo_data)
  return parser


def main(argv: Optional[List[str]] = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if os.environ.get('TF_USE_LEGACY_KERAS') != '1':
    # TFX 1.16 needs Keras 2, and the switch only works before Python starts.
    os.environ['TF_USE_LEGACY_KERAS'] = '1'
    os.execv(sys.executable, [sys.executable, '-m', 'pipeline.cli', *argv])
  args = build_parser().parse_args(argv)
  from pipeline.errors import USER_ERRORS  # pylint: disable=g-import-not-at-top
  try:
    return args.func(args)
  except USER_ERRORS as e:
    print(f'error: {e}', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(main())
