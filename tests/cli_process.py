"""Runs `transfer-pipeline` in a child process the way its console script does.

The stub lives outside the working folder, as the installed script does, so the
child's sys.path[0] is the stub's folder and never the current folder; the project
is found through PYTHONPATH (this checkout) as the editable install would.
"""

import os
import subprocess
import sys
from typing import List, Optional

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUB = '''import sys
from tools.cli import main
code = main()
print('tensorflow imported:', 'tensorflow' in sys.modules)
sys.exit(code)
'''


def run_cli(args: List[str], stub_dir: str, cwd: Optional[str] = None, timeout: int = 600,
            **env) -> subprocess.CompletedProcess:
  """`transfer-pipeline ARGS` from `cwd`, with TF_USE_LEGACY_KERAS unset unless given."""
  stub = os.path.join(stub_dir, 'transfer_pipeline_stub.py')
  if not os.path.exists(stub):
    os.makedirs(stub_dir, exist_ok=True)
    with open(stub, 'w') as f:
      f.write(STUB)
  child_env = {k: v for k, v in os.environ.items()
               if k not in ('TF_USE_LEGACY_KERAS', 'TF_CPP_MIN_LOG_LEVEL', 'PYTHONPATH')}
  child_env.update(PYTHONPATH=PROJECT_ROOT, **env)
  return subprocess.run([sys.executable, stub, *args], cwd=cwd or stub_dir, env=child_env,
                        capture_output=True, text=True, timeout=timeout, check=False)
