"""How fast `transfer-pipeline` answers a user's mistake, next to `--help`.

    python bench/cli_errors.py [--repeats 5]

Each case runs the command line in a fresh process (as the console script does, with
Python start-up) and reports the median wall time and its ratio to `--help`, which
imports nothing heavy. Target (measured, not asserted): every error under 1 s.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, PROJECT_ROOT)
TARGET_SECONDS = 1.0
CLI = 'import sys; from tools.cli import main; sys.exit(main())'


def _cases(tmp: str) -> List[Tuple[str, List[str]]]:
  data = os.path.join(tmp, 'data')
  for name in ('cats', 'dogs'):
    os.makedirs(os.path.join(data, name), exist_ok=True)
  bad_config = os.path.join(tmp, 'bad.yaml')
  with open(bad_config, 'w') as f:
    f.write('model: {image_sise: 150}\n')
  return [
      ('--help (reference)', ['run', '--help']),
      ('run --data <missing folder>', ['run', '--data', os.path.join(tmp, 'missing')]),
      ('run without --data', ['run']),
      ('run --bogus (unknown flag)', ['run', '--data', data, '--bogus']),
      ('run --config <unknown key>', ['run', '--data', data, '--config', bad_config]),
      ('run --weights <missing .h5>', ['run', '--data', data, '--weights', f'{tmp}/w.h5']),
      ('run into a locked output', ['run', '--data', data, '--output', os.path.join(tmp, 'out'),
                                    '--weights', 'none']),
      ('predict --model <missing>', ['predict', '--model', os.path.join(tmp, 'm'), 'x.jpg']),
  ]


def _median_seconds(args: List[str], repeats: int) -> Tuple[float, int]:
  env = dict(os.environ, PYTHONPATH=PROJECT_ROOT)
  env.pop('TF_USE_LEGACY_KERAS', None)
  seconds, code = [], 0
  for _ in range(repeats):
    start = time.perf_counter()
    code = subprocess.run([sys.executable, '-c', CLI, *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, check=False).returncode
    seconds.append(time.perf_counter() - start)
  return statistics.median(seconds), code


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  from pipeline.output_lock import output_lock  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    cases = _cases(tmp)
    results: Dict[str, Tuple[float, int]] = {}
    with output_lock(os.path.join(tmp, 'out')):  # held here: the child must be refused
      for name, argv in cases:
        results[name] = _median_seconds(argv, args.repeats)
  reference = results[cases[0][0]][0]
  print(f'{"case":32} {"exit":>4} {"median s":>9} {"x --help":>9}  target < {TARGET_SECONDS} s')
  for name, (seconds, code) in results.items():
    met = 'met' if seconds < TARGET_SECONDS else 'NOT MET'
    print(f'{name:32} {code:>4} {seconds:9.2f} {seconds / reference:9.1f}  {met}')


if __name__ == '__main__':
  main()
