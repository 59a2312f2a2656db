"""How the jobs of ``fcdd run`` run: ``sequential`` in this process, ``ray`` as tasks on a Ray
cluster. One module per engine registers itself in ``EXECUTORS``; ``fcdd.runner`` picks one by
name and gives it the jobs.
"""

from fcdd.executors.base import EXECUTORS, Executor, ExecutorSettings, check_available
from fcdd.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["EXECUTORS", "Executor", "ExecutorSettings", "check_available"]
