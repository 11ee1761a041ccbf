"""What a person watching a run sees: progress of long steps, and where it is written.

Standard library only, and no import from the rest of the project, so that any
layer (ingestion, Trainer, prediction, the command line) may use it.
"""

from console.output import out, say, warn, writing_to
from console.progress import Progress, progress

__all__ = ['Progress', 'out', 'progress', 'say', 'warn', 'writing_to']
