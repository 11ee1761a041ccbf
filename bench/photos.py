"""Full-size photos through the pipeline: images stored as they come vs downscaled.

  make bench                                  part of the whole benchmark (--photos N)
  python bench/run.py --photos 40 ...         N photos of 12 MP (4000x3000 JPEG)

The same folder of 12-megapixel photos (crops of scikit-learn's sample photos,
tests/real_photos.py) runs through the whole pipeline twice in one invocation: with
`data.max_side_multiple: 0` (every image stored at full size, as before ingestion
downscaled; the ingestion limits lowered to the serving ones so the config is accepted)
and with the default (stored at most 2 x model.image_size on the long side). Transform
and the Evaluator then decode what ingestion stored: their time per image, side by side.
"""

import os
from typing import Any, Callable, Dict, List

PHOTO_SIZE = (4000, 3000)  # 12 MP


def write_photos(folder: str, count: int) -> None:
  """`count` 12 MP JPEGs in two class folders."""
  from tests import real_photos  # pylint: disable=g-import-not-at-top
  photos = real_photos.sample_photos()
  for i in range(count):
    name = real_photos.CLASSES[i % 2]
    os.makedirs(os.path.join(folder, name), exist_ok=True)
    with open(os.path.join(folder, name, f'IMG_{i:04d}.jpg'), 'wb') as f:
      f.write(real_photos.jpeg(real_photos.crop(photos[name], i, PHOTO_SIZE), quality=85))


def measure(bench: Any, pipeline_components: Callable[..., Dict[str, Dict[str, Any]]],
            count: int) -> Dict[str, Any]:
  """Both runs; per run the component timings (MLMD) and the split sizes."""
  folder = os.path.join(bench.work, 'photos')
  write_photos(folder, count)
  raw = {'photos': count, 'size': list(PHOTO_SIZE)}
  for label, multiple in (('full_size', 0), ('downscaled', None)):
    config = bench.config(folder, f'photos-{label}')
    if multiple is not None:
      config.data.max_side_multiple = multiple
      config.data.max_image_pixels = config.serving.max_image_pixels
      config.data.max_image_bytes = config.serving.max_image_bytes
    config.validate()
    result, child = bench.stage(f'photos_{label}', 'pipeline', config)
    result['components'] = pipeline_components(config, child)
    raw[label] = result
  return raw


def figures(raw: Dict[str, Any]) -> Dict[str, Any]:
  """Seconds per photo of Transform (every photo) and the Evaluator (the eval split, 20%)."""
  eval_photos = max(1, round(raw['photos'] * 0.2))
  per_image = {label: {'Transform': raw[label]['components']['Transform']['seconds'] / raw['photos'],
                       'Evaluator': raw[label]['components']['Evaluator']['seconds'] / eval_photos}
               for label in ('full_size', 'downscaled')}
  return {'photos_seconds_per_image': per_image, 'photos_count': raw['photos']}


def rows(f: Dict[str, Any]) -> List[List[str]]:
  per_image = f['photos_seconds_per_image']
  out = [[f'**{f["photos_count"]} photos of 12 MP**: stored at full size vs downscaled '
          '(data.max_side_multiple 0 vs 2)', '', '', '']]
  for component in ('Transform', 'Evaluator'):
    full, small = per_image['full_size'][component], per_image['downscaled'][component]
    out.append([f'{component}, seconds per image', f'{full:.3f} vs {small:.3f}',
                f'{full / max(small, 1e-9):.1f}x faster downscaled', 'measured'])
  return out
