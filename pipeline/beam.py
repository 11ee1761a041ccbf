"""Validated `beam_pipeline_args` presets for StatisticsGen, Transform and Evaluator.

    from pipeline import beam
    config.beam_pipeline_args = beam.beam_pipeline_args('multi_processing', num_workers=4)
    config.beam_pipeline_args = beam.beam_pipeline_args(
        'dataflow', project='my-project', region='europe-west4',
        temp_location='gs://my-bucket/beam-tmp')
    config.beam_pipeline_args = beam.beam_pipeline_args(
        'flink', job_endpoint='flink-jobserver:8099', environment_type='EXTERNAL',
        environment_config='localhost:50000')

Every preset checks its arguments and raises ValueError naming the one that is
missing or wrong, before anything is compiled or run.

The local presets name Beam's FnApiRunner: `--runner=DirectRunner` would first try
Prism, a runner binary that Beam downloads at run time (and, offline, falls back to
FnApiRunner after a failed download in every Beam stage).

`skip_tfx_packaging_on_local_runners` stops TFX from packaging itself for workers
that are processes of this machine.
"""

import functools
import inspect
import re
from typing import Callable, Dict, List, Optional

PRESETS = ('in_memory', 'multi_processing', 'dataflow', 'flink', 'spark')
ENVIRONMENT_TYPES = ('DOCKER', 'PROCESS', 'EXTERNAL', 'LOOPBACK')
# host:port, host being a name, an IPv4 address or a bracketed IPv6 address.
_ENDPOINT = re.compile(r'^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$')
_REGION = re.compile(r'^[a-z]+-[a-z]+\d+$')
# Beam's in-process batch runner, the one DirectRunner falls back to; never downloads.
LOCAL_RUNNER = '--runner=FnApiRunner'
# Runners whose workers run on this machine, with this machine's Python packages
# (lower case, without the 'runner' suffix, as Beam's create_runner matches names).
_LOCAL_RUNNER_NAMES = ('fnapi', 'direct', 'bundlebaseddirect', 'switchingdirect')


def _require(value, name: str, preset: str, what: str):
  if value is None or (isinstance(value, str) and not value.strip()):
    raise ValueError(f"Beam preset '{preset}' needs {name} ({what}).")
  return value.strip() if isinstance(value, str) else value


def _positive_int(value, name: str, preset: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"Beam preset '{preset}': {name} must be an integer >= 1, got {value!r}.")
  return value


def in_memory() -> List[str]:
  """FnApiRunner in this process, one worker: small data, debugging (the local default)."""
  return [LOCAL_RUNNER, '--direct_running_mode=in_memory', '--direct_num_workers=1']


def multi_processing(num_workers: Optional[int] = None) -> List[str]:
  """FnApiRunner with `num_workers` worker processes on the machine that runs the component."""
  preset = 'multi_processing'
  num_workers = _positive_int(
      _require(num_workers, 'num_workers', preset, 'number of worker processes, >= 1'),
      'num_workers', preset)
  return [LOCAL_RUNNER, '--direct_running_mode=multi_processing',
          f'--direct_num_workers={num_workers}']


def dataflow(project: Optional[str] = None, region: Optional[str] = None,
             temp_location: Optional[str] = None, staging_location: Optional[str] = None,
             max_num_workers: Optional[int] = None, machine_type: Optional[str] = None,
             service_account: Optional[str] = None,
             sdk_container_image: Optional[str] = None) -> List[str]:
  """Google Cloud Dataflow. `project`, `region` and a gs:// `temp_location` are required.

  Dataflow workers must be able to import `trainer.preprocessing` (Transform) and
  the pinned TFX stack: pass `sdk_container_image`, an image built FROM an
  apache/beam_python3.10_sdk image with this project installed.
  """
  preset = 'dataflow'
  project = _require(project, 'project', preset, 'the Google Cloud project id')
  region = _require(region, 'region', preset, "a Dataflow region such as 'us-central1'")
  temp_location = _require(temp_location, 'temp_location', preset,
                           'a gs:// folder for temporary files')
  if not _REGION.match(region):
    raise ValueError(f"Beam preset 'dataflow': region must look like 'us-central1', "
                     f'got {region!r}.')
  if not temp_location.startswith('gs://') or len(temp_location) <= len('gs://'):
    raise ValueError(f"Beam preset 'dataflow': temp_location must be a gs:// path, "
                     f'got {temp_location!r}.')
  args = ['--runner=DataflowRunner', f'--project={project}', f'--region={region}',
          f'--temp_location={temp_location}']
  if staging_location is not None:
    if not staging_location.startswith('gs://'):
      raise ValueError(f"Beam preset 'dataflow': staging_location must be a gs:// path, "
                       f'got {staging_location!r}.')
    args.append(f'--staging_location={staging_location}')
  if max_num_workers is not None:
    args.append(f'--max_num_workers={_positive_int(max_num_workers, "max_num_workers", preset)}')
  if machine_type:
    args.append(f'--machine_type={machine_type}')
  if service_account:
    args.append(f'--service_account_email={service_account}')
  if sdk_container_image:
    args.append(f'--sdk_container_image={sdk_container_image}')
  return args


def portable(preset: str, job_endpoint: Optional[str] = None,
             environment_type: Optional[str] = None,
             environment_config: Optional[str] = None,
             parallelism: Optional[int] = None) -> List[str]:
  """Flink or Spark through a Beam job server (PortableRunner).

  environment_type: LOOPBACK (SDK harness in the submitting process: tests),
  DOCKER (environment_config = SDK image), EXTERNAL (environment_config =
  host:port of a Beam worker pool, e.g. a sidecar) or PROCESS
  (environment_config = JSON with the boot command).
  """
  if preset not in ('flink', 'spark'):
    raise ValueError(f"Portable Beam preset must be 'flink' or 'spark', got {preset!r}.")
  job_endpoint = _require(job_endpoint, 'job_endpoint', preset,
                          'host:port of the Beam job server')
  if not _ENDPOINT.match(job_endpoint) or not 0 < int(job_endpoint.rsplit(':', 1)[1]) < 65536:
    raise ValueError(f"Beam preset '{preset}': job_endpoint must be host:port, "
                     f'got {job_endpoint!r}.')
  environment_type = _require(environment_type, 'environment_type', preset,
                              ', '.join(ENVIRONMENT_TYPES)).upper()
  if environment_type not in ENVIRONMENT_TYPES:
    raise ValueError(f"Beam preset '{preset}': environment_type must be one of "
                     f'{", ".join(ENVIRONMENT_TYPES)}, got {environment_type!r}.')
  args = ['--runner=PortableRunner', f'--job_endpoint={job_endpoint}',
          f'--environment_type={environment_type}']
  if environment_type in ('DOCKER', 'EXTERNAL', 'PROCESS'):
    what = {'DOCKER': 'the SDK container image',
            'EXTERNAL': 'host:port of the Beam worker pool',
            'PROCESS': 'JSON with the SDK harness boot command'}[environment_type]
    environment_config = _require(environment_config, 'environment_config', preset,
                                  f'{what}, for environment_type={environment_type}')
    args.append(f'--environment_config={environment_config}')
  elif environment_config:
    raise ValueError(f"Beam preset '{preset}': environment_config is not used with "
                     'environment_type=LOOPBACK.')
  if parallelism is not None:
    args.append(f'--parallelism={_positive_int(parallelism, "parallelism", preset)}')
  return args


def beam_pipeline_args(preset: str, **options) -> List[str]:
  """Returns validated Beam arguments for one of PRESETS; raises ValueError otherwise."""
  builders: Dict[str, Callable[..., List[str]]] = {
      'in_memory': in_memory,
      'multi_processing': multi_processing,
      'dataflow': dataflow,
      'flink': functools.partial(portable, 'flink'),
      'spark': functools.partial(portable, 'spark'),
  }
  if preset not in builders:
    raise ValueError(f'Unknown Beam preset {preset!r}; choose one of {", ".join(PRESETS)}.')
  builder = builders[preset]
  allowed = [n for n in inspect.signature(builder).parameters if n != 'preset']
  unknown = sorted(set(options) - set(allowed))
  if unknown:
    raise ValueError(f"Beam preset '{preset}' does not take {unknown[0]}; "
                     f'its options: {", ".join(allowed) or "none"}.')
  return builder(**options)


def with_local_runner(args: List[str]) -> List[str]:
  """`args` with FnApiRunner in front when they name no runner (Beam's default,
  DirectRunner, would try to download Prism first)."""
  if any(a == '--runner' or a.startswith('--runner=') for a in args):
    return list(args)
  return [LOCAL_RUNNER, *args]


def parse_options(pairs: List[str]) -> Dict[str, object]:
  """['num_workers=4', 'region=us-central1'] -> {'num_workers': 4, 'region': 'us-central1'}."""
  options: Dict[str, object] = {}
  for pair in pairs:
    key, sep, value = pair.partition('=')
    if not sep or not key.strip():
      raise ValueError(f'Beam option {pair!r} must look like name=value.')
    options[key.strip()] = int(value) if value.strip().isdigit() else value.strip()
  return options


def runs_locally(args: List[str]) -> bool:
  """Whether `args` name a runner whose workers are processes of this machine
  (no runner at all means Beam's default, DirectRunner)."""
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
  runner = PipelineOptions(flags=list(args)).get_all_options().get('runner') or 'DirectRunner'
  name = str(runner).rsplit('.', 1)[-1].lower()
  return name.removesuffix('runner') in _LOCAL_RUNNER_NAMES


def skip_tfx_packaging_on_local_runners() -> None:
  """Makes Beam-based TFX executors skip packaging TFX when their runner is local.

  When `beam_pipeline_args` name no dependency (`--extra_package`, `--setup_file`,
  a container image...), every Beam executor of TFX 1.16 copies the installed `tfx`
  package into a new temporary folder and runs `setup.py sdist` there
  (`tfx.utils.dependency_utils`), for remote workers to install: about 2 seconds and
  49 MB of never-removed /tmp per Beam component and run. Local runners' workers
  already have TFX. Remote runners keep TFX's behaviour. Idempotent.
  """
  from tfx.utils import dependency_utils  # pylint: disable=g-import-not-at-top
  packaging = dependency_utils.make_beam_dependency_flags
  if getattr(packaging, 'skips_local_runners', False):
    return

  @functools.wraps(packaging)
  def dependency_flags(beam_args: List[str]) -> List[str]:
    return list(beam_args) if runs_locally(beam_args) else packaging(beam_args)

  dependency_flags.skips_local_runners = True
  dependency_utils.make_beam_dependency_flags = dependency_flags
