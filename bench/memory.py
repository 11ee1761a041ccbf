"""Runs one benchmark stage in a child process and records its wall time and memory."""

import dataclasses
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

PAGE_MB = os.sysconf('SC_PAGE_SIZE') / 2**20


@dataclasses.dataclass
class ChildResult:
  seconds: float                       # wall time of the whole child process
  peak_rss_mb: float                   # ru_maxrss of the child and its waited-for children
  samples: List[Tuple[float, float]]   # (unix time, RSS MB of the process tree)


def _tree_rss_mb(root: int) -> float:
  """RSS of `root` and all its descendants (Beam workers, if any), from /proc."""
  children: Dict[int, List[int]] = {}
  rss = {}
  for entry in os.listdir('/proc'):
    if not entry.isdigit():
      continue
    try:
      with open(f'/proc/{entry}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    except OSError:
      continue
    pid = int(entry)
    children.setdefault(int(fields[1]), []).append(pid)
    rss[pid] = int(fields[21]) * PAGE_MB
  total, todo = 0.0, [root]
  while todo:
    pid = todo.pop()
    total += rss.get(pid, 0.0)
    todo.extend(children.get(pid, []))
  return total


def run_child(args: List[str], log_path: str, interval: float = 0.25,
              env: Optional[Dict[str, str]] = None) -> ChildResult:
  """Runs `python args...`, sampling its process tree's RSS; fails if it fails."""
  start = time.time()
  with open(log_path, 'w') as log:
    process = subprocess.Popen([sys.executable] + args, stdout=log, stderr=subprocess.STDOUT,
                               env=env)
    samples = []
    while True:
      pid, status, usage = os.wait4(process.pid, os.WNOHANG)
      if pid:
        break
      samples.append((time.time(), _tree_rss_mb(process.pid)))
      time.sleep(interval)
  process.returncode = os.waitstatus_to_exitcode(status)
  if process.returncode:
    with open(log_path) as f:
      tail = f.read()[-3000:]
    raise RuntimeError(f'Stage {args} failed ({process.returncode}); log {log_path}:\n{tail}')
  # ru_maxrss is in KiB on Linux.
  return ChildResult(time.time() - start, usage.ru_maxrss / 1024, samples)


def peak_between(samples: List[Tuple[float, float]], start: float, end: float) -> float:
  """Highest sampled RSS (MB) in [start, end]; 0 when no sample fell inside."""
  return max((rss for t, rss in samples if start <= t <= end), default=0.0)


def rss_at(samples: List[Tuple[float, float]], when: float) -> float:
  """The last sampled RSS (MB) at or before `when`; 0 before the first sample."""
  return max(((t, rss) for t, rss in samples if t <= when), default=(0.0, 0.0))[1]
