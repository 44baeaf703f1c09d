"""Temporal modules that plug into the hook slots of the shared backbones."""
from edgefuse.models.layers.adafuse import ACTIONS, AdaFuse, argmax_onehot, hidden_size
from edgefuse.models.layers.gsf import GSF, gsf_channels
from edgefuse.models.layers.non_local import NonLocal
from edgefuse.models.layers.shift import TemporalShift

__all__ = ["ACTIONS", "GSF", "AdaFuse", "NonLocal", "TemporalShift", "argmax_onehot", "gsf_channels", "hidden_size"]
