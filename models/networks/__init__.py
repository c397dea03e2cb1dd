"""Audio+text fusion networks over a window of dialogue utterances.

``build_network(config)`` assembles the one shared path (input encoding -> mixer -> pooling ->
classifier, see :mod:`.common`) with the mixer that ``config.network`` names.
"""

from __future__ import annotations

from models.networks.common import (
    FusionBatch,
    FusionNetwork,
    FusionOutput,
    Pooling,
    count_parameters,
)
from models.networks.config import FusionConfig, NetworkKind
from models.networks.mcaf import mcaf_mixer
from models.networks.mha import attention_mixer

__all__ = [
    "FusionBatch", "FusionConfig", "FusionNetwork", "FusionOutput", "NetworkKind",
    "build_network", "count_parameters",
]


def build_network(config: FusionConfig) -> FusionNetwork:
    """The network ``config`` describes, freshly initialised (seed torch first to reproduce)."""
    if config.network is NetworkKind.MCAF:
        return FusionNetwork(config, mcaf_mixer(config), Pooling.CONCAT)
    cross = config.network is NetworkKind.CROSS_MHA
    return FusionNetwork(config, attention_mixer(config, cross), Pooling.STATS)
