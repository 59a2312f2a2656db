"""fcdd: explainable visual anomaly detection.

    import fcdd
    run = fcdd.train(fcdd.Config(data="path/to/mvtec/bottle", out="runs/bottle", epochs=50))
    detector = fcdd.load("runs/bottle")
    detector.predict(["new.png"])
"""

from fcdd.config import Config

# imported eagerly so that the name ``fcdd.train`` is the function, not the submodule
from fcdd.train import train  # noqa: E402  isort: skip

__version__ = "0.1.0"


def load(run_or_snapshot, device: str = "auto", **options):
    """A ``Detector`` for a run folder or snapshot file (``threshold=``, ``batch_size=`` ...)."""
    from fcdd.detector import Detector

    return Detector.load(run_or_snapshot, device=device, **options)


__all__ = ["Config", "train", "load", "__version__"]
