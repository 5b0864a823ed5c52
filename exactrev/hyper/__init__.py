"""Hypergradients by exact reversal: the one entry point, the meta-parameters, the losses, the data and
the meta-optimiser (re-exported at the top level of ``exactrev``)."""

from .api import hypergradient, train
from .data import Dataset, Split, load_digits
from .hypergrad import HypergradResult, MetaParams, initial_weights
from .hypergrad_adam import AdamMetaParams
from .losses import MLPTrainingLoss, MLPValidationLoss, RowTerm
from .meta_adam import MetaAdam

__all__ = ["hypergradient", "train", "Dataset", "Split", "load_digits", "HypergradResult", "MetaParams",
           "initial_weights", "AdamMetaParams", "MLPTrainingLoss", "MLPValidationLoss", "RowTerm",
           "MetaAdam"]
