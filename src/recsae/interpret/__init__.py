"""Interpretation (docs/method.md §4): concept vocabulary, per-row concept features, the concept
dictionary fitted on some users and validated on the others, the neuron and random-SAE
baselines, coherence and planted-concept recovery."""

from recsae.interpret.api import (
    InterpretationResult,
    InterpretConfig,
    UnitResult,
    interpret,
    interpret_units,
    prepare,
    read_interpretation,
    write_interpretation,
)
from recsae.interpret.concepts import ConceptConfig, ConceptVocab, build_vocabulary
from recsae.interpret.dictionary import FitConfig
from recsae.interpret.features import FeatureConfig, RowContext, row_features

__all__ = [
    "ConceptConfig",
    "ConceptVocab",
    "FeatureConfig",
    "FitConfig",
    "InterpretConfig",
    "InterpretationResult",
    "RowContext",
    "UnitResult",
    "build_vocabulary",
    "interpret",
    "interpret_units",
    "prepare",
    "read_interpretation",
    "row_features",
    "write_interpretation",
]
