"""The scale stage: the whole pipeline on N times the images, next to the 1x run.

  python bench/run.py --scale 10 ...            part of the whole benchmark
  python bench/run.py --scale 5 --only-scale    the weights and this stage alone

Both runs use the lesson's default training path (augmentation on: the view cache) on
built-in digits written as `make bench` writes them (1x: --images train and half as
many eval images; Nx: N times both, other jitter). Per component: seconds per image
(over all the run's images: train + eval), the RSS high-water in its window and, from
the two runs, the marginal seconds per image (fixed costs removed);
per output artifact: bytes on disk.
"""

import os
from typing import Any, Callable, Dict, List, Optional

from ml_metadata.proto import metadata_store_pb2

from bench import data as data_lib, mlmd

TIME_TARGET, RSS_TARGET = 1.15, 1.2
EXTRAPOLATE_TO = 200_000  # train images


def artifact_bytes(metadata_path: str) -> Dict[str, int]:
  """'<component>.<output key>' -> bytes on disk, for the newest run's outputs."""
  store = mlmd.open_store(metadata_path)
  sizes = {}
  for execution in mlmd.latest_run_executions(store):
    component = mlmd.component_name(store, execution)
    for event in store.get_events_by_execution_ids([execution.id]):
      if event.type != metadata_store_pb2.Event.OUTPUT or not event.path.steps:
        continue
      (artifact,) = store.get_artifacts_by_id([event.artifact_id])
      sizes[f'{component}.{event.path.steps[0].key}'] = _dir_bytes(artifact.uri)
  return sizes


def _dir_bytes(path: str) -> int:
  if os.path.isfile(path):
    return os.path.getsize(path)
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def write_data(work: str, images: int, factor: int) -> Dict[int, str]:
  """size -> data folder: `size` x `images` train and half as many eval digits."""
  folders = {}
  for size in (1, factor):
    folders[size] = os.path.join(work, f'data-scale-{size}x')
    data_lib.write_digit_images(folders[size], images * size, images * size // 2, seed=3)
  return folders


def measure(bench: Any, pipeline_components: Callable[..., Dict[str, Dict[str, Any]]],
            images: int, factor: int, folders: Optional[Dict[int, str]] = None) -> Dict[str, Any]:
  """The pipeline at 1x and `factor`x `images` train images; raw results per size."""
  raw: Dict[str, Any] = {'factor': factor, 'runs': {}}
  folders = folders or write_data(bench.work, images, factor)
  for size in (1, factor):
    folder = folders[size]
    config = bench.config(folder, f'scale-{size}x', augment=True)
    result, child = bench.stage(f'scale_{size}x', 'pipeline', config)
    raw['runs'][str(size)] = {
        'train_images': images * size, 'eval_images': images * size // 2,
        'seconds': result['seconds'], 'peak_rss_mb': result['peak_rss_mb'],
        'components': pipeline_components(config, child),
        'artifact_bytes': artifact_bytes(config.metadata_path),
        # (unix time, MB): the component windows above are unix times too.
        'rss_samples': [(round(t, 2), round(mb, 1)) for t, mb in child.samples]}
  return raw


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
  return a / b if a is not None and b else None


def _rise(component: Dict[str, Any]) -> Optional[float]:
  """How far the component took the shared process's RSS above where its window began."""
  peak, start = component.get('peak_rss_mb'), component.get('start_rss_mb')
  return max(peak - start, 0.0) if peak and start else None


def figures(raw: Dict[str, Any]) -> Dict[str, Any]:
  """`scale.<component>`: time per image and peak RSS at both sizes, their ratios and
  the marginal seconds per image; `scale_disk`: bytes per artifact at both sizes."""
  factor = raw['factor']
  small, large = raw['runs']['1'], raw['runs'][str(factor)]
  n_small = small['train_images'] + small['eval_images']
  n_large = large['train_images'] + large['eval_images']
  scale = {}
  for name, one in small['components'].items():
    many = large['components'].get(name)
    if not many:
      continue
    per_small, per_large = one['seconds'] / n_small, many['seconds'] / n_large
    scale[name] = {
        'time_per_image_1x': per_small, f'time_per_image_{factor}x': per_large,
        'time_per_image_ratio': per_large / per_small if per_small else None,
        'marginal_seconds_per_image': (many['seconds'] - one['seconds']) / (n_large - n_small),
        'peak_rss_mb_1x': one.get('peak_rss_mb'), f'peak_rss_mb_{factor}x': many.get('peak_rss_mb'),
        'peak_rss_ratio': _ratio(many.get('peak_rss_mb'), one.get('peak_rss_mb')),
        'rss_rise_mb_1x': _rise(one), f'rss_rise_mb_{factor}x': _rise(many)}
  disk = {key: {'bytes_1x': b, f'bytes_{factor}x': large['artifact_bytes'].get(key, 0),
                'ratio': _ratio(large['artifact_bytes'].get(key, 0), b)}
          for key, b in sorted(small['artifact_bytes'].items())}
  return {'scale_factor': factor, 'scale_images': {'1x': n_small, f'{factor}x': n_large},
          'scale': scale, 'scale_disk': disk,
          'scale_pipeline_seconds': {'1x': small['seconds'], f'{factor}x': large['seconds']},
          'scale_peak_rss_mb': {'1x': small['peak_rss_mb'], f'{factor}x': large['peak_rss_mb']},
          'scale_extrapolated_seconds': extrapolate(scale, factor)}


def extrapolate(scale: Dict[str, Dict[str, Any]], factor: int) -> Dict[str, float]:
  """Seconds per component at EXTRAPOLATE_TO train images (+ half as many eval images):
  the Nx run's time per image times the images. Per-image cost that falls with size
  (fixed costs spread thinner) makes this an upper bound; one that grows does not."""
  images = EXTRAPOLATE_TO * 3 // 2
  out = {name: c[f'time_per_image_{factor}x'] * images for name, c in scale.items()}
  out['total'] = sum(out.values())
  return out


def targets(f: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
  out = {}
  for name, c in f.get('scale', {}).items():
    if c['time_per_image_ratio'] is not None:
      out[f'scale.{name}.time_per_image_ratio'] = {
          'target': f'<= {TIME_TARGET}', 'met': c['time_per_image_ratio'] <= TIME_TARGET}
    if c['peak_rss_ratio'] is not None:
      out[f'scale.{name}.peak_rss_ratio'] = {
          'target': f'<= {RSS_TARGET}', 'met': c['peak_rss_ratio'] <= RSS_TARGET}
  return out


def _ratio_text(ratio: Optional[float]) -> str:
  return f'{ratio:.2f}' if ratio is not None else ''


def _mb(n: float) -> str:
  return f'{n / 1e6:.1f} MB'


def rows(f: Dict[str, Any]) -> List[List[str]]:
  """Markdown rows: per component time per image and peak RSS at 1x and Nx, with ratios
  against their targets; per artifact the bytes on disk."""
  factor, images = f['scale_factor'], f['scale_images']
  met = f.get('targets', {})

  def verdict(key: str) -> str:
    t = met.get(key)
    return f'{t["target"]}: {"met" if t["met"] else "NOT met"}' if t else ''

  out = [[f'**scale**: the pipeline (augmentation on) on {images["1x"]:,} vs '
          f'{images[f"{factor}x"]:,} images (train + eval)', '1x / ' + f'{factor}x', 'ratio',
          'target']]
  for name, c in f['scale'].items():
    out.append([f'- {name}, ms per image', f'{1000 * c["time_per_image_1x"]:.1f} / '
                f'{1000 * c[f"time_per_image_{factor}x"]:.1f}',
                _ratio_text(c['time_per_image_ratio']),
                verdict(f'scale.{name}.time_per_image_ratio')])
    if c['peak_rss_ratio'] is not None:
      rise = (c.get('rss_rise_mb_1x'), c.get(f'rss_rise_mb_{factor}x'))
      own = f' (own rise {rise[0]:.0f} / {rise[1]:.0f})' if None not in rise else ''
      out.append([f'- {name}, RSS high-water MB', f'{c["peak_rss_mb_1x"]:.0f} / '
                  f'{c[f"peak_rss_mb_{factor}x"]:.0f}{own}', f'{c["peak_rss_ratio"]:.2f}',
                  verdict(f'scale.{name}.peak_rss_ratio')])
  for key, d in f['scale_disk'].items():
    if d['bytes_1x'] or d[f'bytes_{factor}x']:
      out.append([f'- disk: {key}', f'{_mb(d["bytes_1x"])} / {_mb(d[f"bytes_{factor}x"])}',
                  _ratio_text(d['ratio']), 'measured'])
  extrapolated = f['scale_extrapolated_seconds']
  out.append([f'extrapolated to {EXTRAPOLATE_TO:,} train + {EXTRAPOLATE_TO // 2:,} eval images '
              '(this machine)', f'{extrapolated["total"] / 3600:.1f} h in all', '',
              f'the {factor}x time per image x images'])
  for name, seconds in extrapolated.items():
    if name != 'total':
      out.append([f'- {name}', f'{seconds / 3600:.2f} h', '', ''])
  return out
