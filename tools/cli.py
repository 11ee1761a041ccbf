"""`transfer-pipeline`: run the pipeline, predict with a pushed model, write demo data.

Only light modules (standard library, YAML, the typed config) are imported at module
level: arguments, config and paths are checked before TensorFlow is imported, so a
mistake answers at once in one line (exit code 2); `contract` (imported first) selects
Keras 2 before anything imports TensorFlow.
"""

import argparse
from importlib import metadata
import logging
import os
import sys
import tempfile
from typing import Any, Callable, Dict, List, Optional

import contract  # pylint: disable=unused-import  # first: selects Keras 2 for TensorFlow
import console
from contract.settings import MIN_IMAGE_SIZE, ModelConfig
from console import known_noise
from pipeline.configs import ConfigError
from pipeline.output_lock import OutputLockedError, output_lock
from tools import predict_checks, preflight, run_log

# User errors that need no TensorFlow to raise (tools.errors has the full list).
FAST_USER_ERRORS = (ConfigError, OutputLockedError, predict_checks.NothingToClassify)
DEMO_OUTPUT = 'data/digits'
DEMO_SPANS_OUTPUT = 'data/digit-spans'


class UsageError(Exception):
  """A missing, unknown or malformed command-line argument."""


class RunFailed(Exception):
  """An unexpected failure of `run`, logged with its traceback; the message is one line."""


class _Parser(argparse.ArgumentParser):
  """argparse with one-line errors raised as UsageError instead of usage text and exit."""

  def error(self, message: str):
    raise UsageError(f'{message} (see {self.prog} --help)')


def _require_folder(path: str, flag: str) -> None:
  if not os.path.isdir(path):
    raise ConfigError(f'{flag}: {path} does not exist or is not a folder.')


def _apply_beam_flags(config, args: argparse.Namespace):
  """--beam-preset replaces the config's Beam arguments; --beam-arg adds to them."""
  from pipeline import beam  # pylint: disable=g-import-not-at-top
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


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
  """The model and training options `run` and `compile-kubeflow` share."""
  parser.add_argument('--weights', help="'imagenet', 'none' or path/to/inception_v3_..._notop.h5")
  parser.add_argument('--config', help='YAML file with the settings of pipeline/configs.py')
  parser.add_argument('--epochs', type=int, help='training epochs (overrides the config)')
  parser.add_argument('--image-size', type=int,
                      help=f'square input size (default {ModelConfig.image_size}, '
                      f'>= {MIN_IMAGE_SIZE})')
  parser.add_argument('--no-augment', action='store_true', help='turn data augmentation off')
  parser.add_argument('--train-spans', type=int, metavar='N',
                      help='with --data .../span-{SPAN}: train on the newest N spans '
                      '(data.train_spans, default 1)')


def _model_overrides(args: argparse.Namespace) -> dict:
  """Config overrides of `_add_model_flags` (None: not given, the config's value stays)."""
  return {'model.weights': args.weights, 'training.epochs': args.epochs,
          'model.image_size': args.image_size,
          'training.augment': False if args.no_augment else None,
          'data.train_spans': args.train_spans}


def _run_config(args: argparse.Namespace):
  """The validated config of `run`: YAML file, flags, Beam presets (no TensorFlow)."""
  from pipeline.configs import load_config  # pylint: disable=g-import-not-at-top
  config = load_config(args.config, {
      'data.path': args.data, 'output': args.output, **_model_overrides(args),
      'inference.data': args.infer_data, 'data.validation': args.validation,
  })
  if not config.data.path:
    raise UsageError('run needs --data (a folder of class subfolders or of TFRecords), '
                     'or data.path in the --config file')
  return _apply_beam_flags(config, args).validate()


def _run_pipeline(config) -> None:
  """Heavy part of `run`, inside the log capture: preflight, components, summary."""
  # pylint: disable=g-import-not-at-top
  from pipeline import local_runner
  from tools import run_summary as report
  from tools.run_console import ComponentLines
  # pylint: enable=g-import-not-at-top
  preflight.check(config)
  local_runner.run(config, listener=ComponentLines())
  console.say(report.format_summary(report.latest_run_summary(config)))


def _one_line_failure(error: Exception, log_file: str) -> RunFailed:
  cause = str(error).strip().splitlines()
  return RunFailed(f'{type(error).__name__}: {cause[0] if cause else "(no message)"} '
                   f'(traceback in {log_file})')


def _logged(log_file: str, work: Callable[[], None], verbose: bool = False) -> run_log.RunLog:
  """Runs `work` with the libraries' output appended to `log_file`; an unexpected error
  becomes a one-line RunFailed naming the log (which holds the traceback)."""
  with run_log.capture(log_file, verbose=verbose) as log:
    try:
      work()
    except Exception as e:  # pylint: disable=broad-except
      logging.exception('The command failed.')
      if _is_user_error(e):
        raise
      raise _one_line_failure(e, log_file) from e
  return log


def _tool_log(output: str, command: str) -> str:
  """The log of a command that writes one file: logs/<command>.log beside that file."""
  return os.path.join(os.path.dirname(os.path.abspath(output)), 'logs', f'{command}.log')


def _cmd_run(args: argparse.Namespace) -> int:
  config = _run_config(args)
  preflight.check_files(config)
  log_file = run_log.log_path(config.output)
  with output_lock(config.output):  # a second run into the same folder is refused here
    console.say(f'Running pipeline {config.pipeline_name!r} on {config.data.path} -> '
                f'{config.output}')
    console.say(f'Backbone weights: {preflight.describe_weights(config.model.weights)}')
    console.say(f'Beam: {" ".join(config.beam_pipeline_args)}')
    console.say(f'Log: {log_file}' + (' (shown live)' if args.verbose else ''))
    log = _logged(log_file, lambda: _run_pipeline(config), verbose=args.verbose)
  console.say(f'Log: {log_file} ({log.warnings} warning{"s" if log.warnings != 1 else ""})')
  return 0


def _cmd_predict(args: argparse.Namespace) -> int:
  if args.server:
    return _predict_with_server(args)
  from tools.model_dir import resolve_model_dir  # pylint: disable=g-import-not-at-top
  # Every check that needs no TensorFlow comes first: a mistake answers at once.
  if not os.path.exists(args.model):
    raise ConfigError(f'--model: {args.model} does not exist.')
  if not args.model.endswith('.tflite'):
    try:
      resolve_model_dir(args.model)
    except FileNotFoundError as e:
      raise ConfigError(f'--model: {e}') from e
  predict_checks.check_batch_size(args.batch_size)
  predict_checks.check_inputs(args.inputs)
  predict_checks.output_format(args.output)
  log_file = (_tool_log(args.output, 'predict') if args.output else
              os.path.join(tempfile.gettempdir(), 'transfer-pipeline-predict.log'))
  with run_log.stderr_to(log_file):  # TensorFlow's C++ start-up lines, as `run` hides them
    from tools import batch_predict  # pylint: disable=g-import-not-at-top
  return batch_predict.command(args.model, args.inputs, args.output, args.batch_size,
                               args.max_image_pixels, rank_uncertain=args.rank_uncertain,
                               method=args.uncertainty)


def _predict_with_server(args: argparse.Namespace) -> int:
  """`predict --server`: the same output through a running TF Serving (tools/serving_client.py)."""
  from tools.server_address import parse_server  # pylint: disable=g-import-not-at-top
  parse_server(args.server)  # before TensorFlow is imported: answers at once
  if args.image_size < MIN_IMAGE_SIZE:
    raise ConfigError(f'--image-size: expected an integer >= {MIN_IMAGE_SIZE}.')
  from tools import batch_predict, serving_client  # pylint: disable=g-import-not-at-top
  return batch_predict.command(
      args.server, args.inputs, args.output, args.batch_size, args.max_image_pixels,
      connect=lambda: serving_client.connect(args.server, args.model_name, args.model_version,
                                             args.class_names or (), args.image_size),
      rank_uncertain=args.rank_uncertain, method=args.uncertainty)


def _cmd_demo_data(args: argparse.Namespace) -> int:
  from tools import demo_data  # pylint: disable=g-import-not-at-top
  if args.spans or args.next_span:
    output = args.output if args.output != DEMO_OUTPUT else DEMO_SPANS_OUTPUT
    if len(args.digits) < 2:
      raise UsageError('--spans needs at least two --digits.')
    first = demo_data.next_span(output) if args.next_span else 1
    last = args.spans or first
    for span in range(first, last + 1):
      counts = demo_data.write_digit_span(output, span, args.digits)
      print(f'Span {span}: {sum(counts.values())} digit images in '
            f'{os.path.join(output, demo_data.SPAN_FOLDER.format(span))}: {counts}')
    print(f'Run with --data {os.path.join(output, demo_data.SPAN_PATTERN)} (the newest span).')
    return 0
  counts = demo_data.write_digits(args.output, args.digits)
  print(f'Wrote {sum(counts.values())} digit images to {args.output}: {counts}')
  return 0


def _cmd_calibrate_weights(args: argparse.Namespace) -> int:
  _require_folder(args.data, '--data')

  def calibrate():
    from tools.class_folder import load_class_folder  # pylint: disable=g-import-not-at-top
    from trainer import model as model_lib  # pylint: disable=g-import-not-at-top
    images = load_class_folder(args.data, args.image_size, args.per_class).images
    model_lib.write_calibrated_weights(args.output, images)
    console.say(f'Wrote random InceptionV3 weights with BatchNorm statistics from '
                f'{len(images)} images of {args.data} to {args.output}')
  _logged(_tool_log(args.output, 'calibrate-weights'), calibrate)
  return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
  _require_folder(args.data, '--data')

  def train():
    from tools import pretrain  # pylint: disable=g-import-not-at-top
    pretrain.pretrain(args.data, args.output, image_size=args.image_size, epochs=args.epochs,
                      batch_size=args.batch_size, learning_rate=args.learning_rate,
                      holdout_percent=args.holdout_percent, per_class=args.per_class,
                      seed=args.seed, log=console.say)
  _logged(_tool_log(args.output, 'pretrain'), train)
  return 0


def _trainer_gpu_overrides(flag: Optional[str]) -> Dict[str, Any]:
  """`--trainer-gpu TYPE[:COUNT]` -> the kubeflow.trainer_accelerator settings."""
  if not flag:
    return {}
  accelerator, _, count = flag.partition(':')
  if not accelerator or (count and not count.isdigit()):
    raise ConfigError(f'--trainer-gpu takes TYPE or TYPE:COUNT (e.g. NVIDIA_TESLA_T4:1), '
                      f'got {flag!r}.')
  return {'kubeflow.trainer_accelerator': accelerator,
          'kubeflow.trainer_accelerator_count': int(count or 1)}


def _cmd_compile_kubeflow(args: argparse.Namespace) -> int:
  from kubeflow import preflight as kfp_preflight  # pylint: disable=g-import-not-at-top
  from pipeline.configs import load_config  # pylint: disable=g-import-not-at-top
  config = load_config(args.config, {'data.path': args.data, 'output': args.pipeline_output,
                                     'data.class_names': args.class_names,
                                     **_trainer_gpu_overrides(args.trainer_gpu),
                                     **_model_overrides(args)})
  config = _apply_beam_flags(config, args).validate()
  try:
    kfp_preflight.check_paths(config)  # before TFX is imported: answers at once
  except ValueError as e:
    raise ConfigError(str(e)) from e
  for warning in kfp_preflight.warnings(config, args.image):
    print(f'warning: {warning}', file=sys.stderr)
  from kubeflow import runner  # pylint: disable=g-import-not-at-top
  try:
    path = runner.compile_pipeline(config, args.output, args.image)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  print(f'Wrote Kubeflow Pipelines v2 spec {path} (image {args.image}; weights '
        f'{config.model.weights}, {config.training.epochs} epochs, image size '
        f'{config.model.image_size}, augment {"on" if config.training.augment else "off"})')
  return 0


def version() -> str:
  """This package's version and the pinned stack's, from the installed metadata (nothing
  imported)."""
  def of(name: str) -> str:
    try:
      return metadata.version(name)
    except metadata.PackageNotFoundError:
      return 'not installed'
  return (f'transfer-pipeline {of("transfer-pipeline")} (TFX {of("tfx")}, TensorFlow '
          f'{of("tensorflow")}, Python {sys.version.split()[0]})')


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog='transfer-pipeline', description=__doc__.splitlines()[0])
  parser.add_argument('--version', action='version', version=version())
  sub = parser.add_subparsers(dest='command', required=True)

  run = sub.add_parser('run', help='run the whole pipeline locally')
  run.add_argument('--data', help='folder of class subfolders of images, or of TFRecords')
  run.add_argument('--output', help='folder for everything the run writes (default runs/default)')
  _add_model_flags(run)
  run.add_argument('--validation', choices=('stop', 'warn'),
                   help='what data anomalies do: stop the run before training (default), '
                   'or warn and train anyway (overrides data.validation)')
  run.add_argument('--verbose', action='store_true',
                   help="also show the libraries' log live (always in <output>/logs/run.log)")
  run.add_argument('--infer-data', metavar='FOLDER', help='unlabeled images: batch inference '
                   '(BulkInferrer) with the blessed model, written as predictions.csv')
  _add_beam_flags(run)
  run.set_defaults(func=_cmd_run)

  predict = sub.add_parser('predict', help='classify image files and folders with a pushed model')
  model = predict.add_mutually_exclusive_group(required=True)
  model.add_argument('--model',
                     help='serving_model/<model_name> folder (newest version), a version '
                     'folder, or a model.tflite file')
  model.add_argument('--server', metavar='URL', help='a running TF Serving instead: '
                     'http://HOST:8501 (REST) or grpc://HOST:8500 (gRPC)')
  predict.add_argument('--model-name', default='image_classifier', help='with --server')
  predict.add_argument('--model-version', type=int, help='with --server (default: the newest)')
  predict.add_argument('--class-names', nargs='+', metavar='NAME',
                       help='with --server: class names in class-id order (default class_0, ...)')
  predict.add_argument('--image-size', type=int, default=ModelConfig.image_size,
                       help='with --server: the model\'s input size; larger photos are sent '
                       f'downscaled as ingestion stores them (default {ModelConfig.image_size})')
  predict.add_argument('inputs', nargs='+', metavar='FOLDER_OR_FILE',
                       help='image files and folders (walked recursively)')
  predict.add_argument('--output', help='predictions.csv or .jsonl (default: CSV on stdout)')
  predict.add_argument('--batch-size', type=int, default=32, help='images per model call')
  predict.add_argument('--max-image-pixels', type=int,
                       help='refuse larger images (default: data.max_image_pixels\'s)')
  predict.add_argument('--rank-uncertain', metavar='FILE.csv',
                       help='also write the images ranked most uncertain first: what to '
                       'label next')
  predict.add_argument('--uncertainty', choices=('margin', 'entropy'), default='margin',
                       help='the ranking\'s score (default: margin)')
  predict.set_defaults(func=_cmd_predict)

  kfp = sub.add_parser('compile-kubeflow', help='compile a Kubeflow Pipelines / Vertex v2 spec')
  kfp.add_argument('--data', help='data folder as the pipeline will see it')
  kfp.add_argument('--pipeline-output', help='output root of the pipeline run (e.g. gs://bucket/runs)')
  kfp.add_argument('--class-names', nargs='+', help='TFRecord input only: class names in label order')
  kfp.add_argument('--image', default='transfer-pipeline:0.1.0',
                   help='pipeline container image in a registry the cluster pulls from '
                   '(default: the local `docker build` tag, which no cluster can pull)')
  kfp.add_argument('--output', default='kubeflow/build/pipeline.json', help='JSON file to write')
  kfp.add_argument('--trainer-gpu', metavar='TYPE[:COUNT]',
                   help='run the Trainer (and Tuner) on a GPU node: the accelerator as the '
                   'platform names it, e.g. NVIDIA_TESLA_T4 (Vertex AI) or nvidia.com/gpu '
                   '(Kubeflow Pipelines); sets kubeflow.trainer_accelerator')
  _add_model_flags(kfp)  # --config: pipeline root under `output`, e.g. gs://...
  _add_beam_flags(kfp)
  kfp.set_defaults(func=_cmd_compile_kubeflow)

  calibrate = sub.add_parser(
      'calibrate-weights', help='offline stand-in for pretrained weights: random kernels, '
      'BatchNorm statistics from your images (no labels used)')
  calibrate.add_argument('--data', required=True, help='folder of class subfolders')
  calibrate.add_argument('--output', required=True, help='path of the _notop.h5 file to write')
  calibrate.add_argument('--image-size', type=int, default=ModelConfig.image_size)
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
  demo.add_argument('--output', default=DEMO_OUTPUT,
                    help=f'folder to write (with --spans: default {DEMO_SPANS_OUTPUT})')
  demo.add_argument('--digits', type=int, nargs='+', default=[0, 1])
  demo.add_argument('--spans', type=int, default=0,
                    help='write weekly span folders span-1 .. span-N of different images '
                         '(span 3: a drifted class balance), for --data <output>/span-{SPAN}')
  demo.add_argument('--next-span', action='store_true',
                    help='write the spans so far and one more (a new week of data)')
  demo.set_defaults(func=_cmd_demo_data)
  return parser


def _is_user_error(error: BaseException) -> bool:
  if isinstance(error, FAST_USER_ERRORS + (UsageError,)):
    return True
  from tools.errors import USER_ERRORS  # pylint: disable=g-import-not-at-top
  return isinstance(error, USER_ERRORS)


def main(argv: Optional[List[str]] = None) -> int:
  """Runs one command; user errors -> one line and 2, an unexpected run failure -> 1."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')  # C++ INFO lines off; warnings stay
  known_noise.install()
  try:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return args.func(args)
  except RunFailed as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print('error: interrupted', file=sys.stderr)
    return 130
  except Exception as e:  # pylint: disable=broad-except
    if not _is_user_error(e):
      raise
    print(f'error: {e}', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(main())
