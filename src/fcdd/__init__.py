"""fcdd: explainable visual anomaly detection.

    import fcdd
    run = fcdd.train(fcdd.Config(data="path/to/mvtec/bottle", out="runs/bottle", epochs=50))
    detector = fcdd.load("runs/bottle")
"""

from fcdd.config import Config

__version__ = "0.1.0"


def train(config: Config, splits=None):
    """Train, evaluate and (with ``config.out``) write a run folder; returns a ``Run``."""
    from fcdd.train import train as _train

    return _train(config, splits)


def load(run_or_snapshot):
    """A ``Detector`` for a run folder or snapshot file."""
    from fcdd.detector import Detector

    return Detector.load(run_or_snapshot)


__all__ = ["Config", "train", "load", "__version__"]
