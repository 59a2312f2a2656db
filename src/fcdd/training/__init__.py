"""Training: set-up, the learner a method asks for, and ``execute`` for a whole run."""

from fcdd.training.execute import execute
from fcdd.training.setup import Setup, prepare
from fcdd.training.trainer import SinglePassFit, Trainer, make_learner, prefetch

__all__ = ["Setup", "SinglePassFit", "Trainer", "execute", "make_learner", "prefetch", "prepare"]
