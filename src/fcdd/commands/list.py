"""``fcdd list``: every registered name a flag accepts."""

from __future__ import annotations

from fcdd.commands.base import command
from fcdd.data import DATASETS
from fcdd.data.noise import NOISE
from fcdd.data.supervision import SUPERVISION
from fcdd.executors import EXECUTORS
from fcdd.methods import METHODS
from fcdd.models import NETS
from fcdd.models.autoencoders import ENCODER_DECODERS
from fcdd.presets import PRESETS
from fcdd.tracking import TRACKERS

#: (title, registry) per section of ``fcdd list``
SECTIONS = (
    ("nets", NETS), ("encoder-decoders", ENCODER_DECODERS), ("datasets", DATASETS), ("objectives", METHODS),
    ("noise modes", NOISE), ("supervision modes", SUPERVISION), ("presets", PRESETS), ("loggers", TRACKERS),
    ("executors", EXECUTORS),
)


@command("list", "list the registered networks, encoder-decoders, data sets, objectives, noise and supervision modes, presets, loggers, executors")
def cmd_list(args) -> None:
    for title, registry in SECTIONS:
        print(f"{title}: {', '.join(registry.names())}")
