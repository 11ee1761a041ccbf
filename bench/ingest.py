"""ExampleGen throughput: the old one-process loop vs the Beam ExampleGen (1 and 2 workers).

  python -m bench.ingest [--images 2000]      standalone (built-in digits)
  make bench                                  part of the whole benchmark

Every mode runs in its own process on the same folder and writes the same examples:
  loop   list, then read/check/write each file in one Python loop (what ExampleGen did
         before it ran on Beam; the same per-file code)
  beam1  the Beam ExampleGen, FnApiRunner in-process, one worker
  beam2  the same, two worker processes (direct_running_mode=multi_processing)
Peak RSS of beam1 on the full and the small data set shows whether memory grows with
the number of images (the file list may be in memory, the images not).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional

MODES = {'loop': None,
         'beam1': ['--runner=FnApiRunner', '--direct_running_mode=in_memory',
                   '--direct_num_workers=1'],
         'beam2': ['--runner=FnApiRunner', '--direct_running_mode=multi_processing',
                   '--direct_num_workers=2']}
OPTIONS = {'num_shards': 4}
# 640x640 JPEGs: per-file work like a photo's, not a 32 px digit's.
UPSCALE = 80


def _loop(root: str, output_dir: str) -> int:
  """The former ingestion loop: one process, files in listing order, round-robin shards."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from components.example_gen import content_split, image_ingest, image_listing  # pylint: disable=g-import-not-at-top
  listing = image_listing.list_folder(root)
  labels = {name: i for i, name in enumerate(listing.class_names)}
  real_root = os.path.realpath(root)
  writers, written = {}, 0
  for split in image_listing.SPLITS:
    os.makedirs(os.path.join(output_dir, f'Split-{split}'))
    writers[split] = [tf.io.TFRecordWriter(
        os.path.join(output_dir, f'Split-{split}', f'{i}.gz'), 'GZIP')
        for i in range(OPTIONS['num_shards'])]
  for cand in listing.candidates:
    if cand.class_name == image_listing.ROOT_CLASS:
      continue
    try:
      image = image_ingest.read_image(cand.path, real_root, 40_000_000)
    except image_ingest.Refused:
      continue
    digest = content_split.content_digest(image)  # the cost of the content split's hash
    split = cand.split or ('eval' if int(digest[:8], 16) % 100 < 20 else 'train')
    example = image_ingest.make_example(image, labels[cand.class_name], cand.class_name,
                                        cand.relpath)
    writers[split][written % OPTIONS['num_shards']].write(example.SerializeToString())
    written += 1
  for shard_writers in writers.values():
    for writer in shard_writers:
      writer.close()
  return written


def child(mode: str, data: str, json_path: str) -> None:
  """One mode, timed from the first listing to the last file written."""
  from components.example_gen import ingest_pipeline  # pylint: disable=g-import-not-at-top
  output_dir = json_path + '.examples'
  shutil.rmtree(output_dir, ignore_errors=True)
  start = time.time()
  if mode == 'loop':
    images = _loop(data, output_dir)
  else:
    summary = ingest_pipeline.ingest(data, output_dir, beam_args=MODES[mode], **OPTIONS)
    images = sum(sum(per_class.values()) for per_class in summary.written.values())
  seconds = time.time() - start
  shutil.rmtree(output_dir)
  with open(json_path, 'w') as f:
    json.dump({'mode': mode, 'images': images, 'seconds': seconds,
               'images_per_second': images / seconds}, f)


def measure(run_stage: Callable[[str, List[str]], Dict[str, Any]], work: str,
            images: int) -> Dict[str, Any]:
  """Writes photo-sized images (`images` train, half as many eval; a quarter of that for
  the memory check), then runs every mode through `run_stage(label, args)`, which
  returns the stage's JSON with `peak_rss_mb` added."""
  from bench import data as data_lib  # pylint: disable=g-import-not-at-top
  full, small = os.path.join(work, 'ingest-data'), os.path.join(work, 'ingest-data-small')
  tiny = os.path.join(work, 'ingest-data-tiny')
  for folder, count, seed in ((full, images, 0), (small, images // 4, 1), (tiny, 4, 2)):
    data_lib.write_digit_images(folder, count, count // 2, upscale=UPSCALE, seed=seed,
                                suffix='.jpg')
  raw = {mode: run_stage(f'ingest_{mode}', ['-m', 'bench.ingest', 'child', mode, full])
         for mode in MODES}
  for mode in ('beam1', 'beam2'):  # the fixed cost: pipeline and worker start, 6 images
    raw[f'{mode}_start'] = run_stage(f'ingest_{mode}_start',
                                     ['-m', 'bench.ingest', 'child', mode, tiny])
  raw['beam1_small'] = run_stage('ingest_beam1_small', ['-m', 'bench.ingest', 'child',
                                                         'beam1', small])
  return raw


def figures(raw: Dict[str, Any]) -> Dict[str, Any]:
  rate = {mode: raw[mode]['images_per_second'] for mode in MODES}
  start = {mode: raw[f'{mode}_start']['seconds'] for mode in ('beam1', 'beam2')}
  # After the fixed start cost (worker processes import TensorFlow): the rate at scale.
  steady = {mode: raw[mode]['images'] / max(raw[mode]['seconds'] - start[mode], 1e-9)
            for mode in start}
  return {
      'ingest_images_per_second': rate,
      'ingest_start_seconds': start,
      'ingest_images_per_second_after_start': steady,
      'ingest_beam2_over_beam1': rate['beam2'] / rate['beam1'],
      'ingest_beam2_over_beam1_after_start': steady['beam2'] / steady['beam1'],
      'ingest_beam1_over_loop': rate['beam1'] / rate['loop'],
      'ingest_peak_rss_mb': {mode: raw[mode]['peak_rss_mb'] for mode in MODES},
      'ingest_rss_growth_beam1': raw['beam1']['peak_rss_mb'] / raw['beam1_small']['peak_rss_mb'],
      'ingest_images': {'full': raw['beam1']['images'], 'small': raw['beam1_small']['images']},
  }


def rows(f: Dict[str, Any]) -> List[List[str]]:
  """Table rows: figure, value, ratio, target (the columns of bench/report.py)."""
  rate, rss = f['ingest_images_per_second'], f['ingest_peak_rss_mb']
  start, steady = f['ingest_start_seconds'], f['ingest_images_per_second_after_start']
  sizes = f['ingest_images']
  return [
      ['ExampleGen, one-process loop', f'{rate["loop"]:.0f} images/s, {rss["loop"]:.0f} MB',
       '1.00x', ''],
      ['ExampleGen on Beam, 1 worker', f'{rate["beam1"]:.0f} images/s, {rss["beam1"]:.0f} MB',
       f'{f["ingest_beam1_over_loop"]:.2f}x loop', ''],
      ['ExampleGen on Beam, 2 worker processes',
       f'{rate["beam2"]:.0f} images/s, {rss["beam2"]:.0f} MB (all processes)',
       f'{f["ingest_beam2_over_beam1"]:.2f}x 1 worker', '>= 1.6x'],
      ['- after the fixed start (1 / 2 workers: '
       f'{start["beam1"]:.0f} s / {start["beam2"]:.0f} s)',
       f'{steady["beam1"]:.0f} / {steady["beam2"]:.0f} images/s',
       f'{f["ingest_beam2_over_beam1_after_start"]:.2f}x 1 worker', '>= 1.6x'],
      [f'ExampleGen peak RSS growth, {sizes["small"]} -> {sizes["full"]} images', '',
       f'{f["ingest_rss_growth_beam1"]:.2f}x', 'flat'],
  ]


def main(argv: Optional[List[str]] = None) -> None:
  argv = sys.argv[1:] if argv is None else argv
  if argv[:1] == ['child']:
    mode, data = argv[1], argv[2]
    child(mode, data, argv[argv.index('--json') + 1])
    return
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--images', type=int, default=2000, help='train images (eval: half)')
  args = parser.parse_args(argv)
  from bench import memory  # pylint: disable=g-import-not-at-top
  work = tempfile.mkdtemp(prefix='bench-ingest-')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root, TF_USE_LEGACY_KERAS='1')

  def run_stage(label: str, stage_args: List[str]) -> Dict[str, Any]:
    out = os.path.join(work, f'{label}.json')
    result = memory.run_child(stage_args + ['--json', out], os.path.join(work, f'{label}.log'),
                              env=env)
    with open(out) as f:
      stage = json.load(f)
    stage['peak_rss_mb'] = max([result.peak_rss_mb] + [rss for _, rss in result.samples])
    print(f'[bench] {label}: {stage["images_per_second"]:.0f} images/s, '
          f'{stage["peak_rss_mb"]:.0f} MB', flush=True)
    return stage

  found = figures(measure(run_stage, work, args.images))
  print('\n'.join('| ' + ' | '.join(r) + ' |' for r in rows(found)))
  print(json.dumps(found, indent=2))


if __name__ == '__main__':
  main()
