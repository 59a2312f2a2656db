"""Networks with receptive-field bookkeeping; ``build_net(name, ...)`` makes one by name."""

from fcdd.models.base import FCDDNet, ReceptiveField, receptive_field_of
from fcdd.models.registry import NETS, build_net
from fcdd.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["FCDDNet", "ReceptiveField", "receptive_field_of", "NETS", "build_net"]
