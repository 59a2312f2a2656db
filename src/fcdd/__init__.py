"""fcdd: explainable visual anomaly detection.

    import fcdd
    run = fcdd.train(fcdd.Config(data="path/to/mvtec/bottle", out="runs/bottle", epochs=50))
    detector = fcdd.load(run)
    detector.predict(["new.png"])

``train``, ``load`` and ``Detector`` are looked up lazily (``fcdd.api``), so ``import fcdd``
stays light and no name here hides a submodule.
"""

from fcdd.config import Config

__version__ = "0.1.0"

_API = {"train": "fcdd.api", "load": "fcdd.api", "Detector": "fcdd.detector", "Prediction": "fcdd.detector"}


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'fcdd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = ["Config", "Detector", "Prediction", "train", "load", "__version__"]
