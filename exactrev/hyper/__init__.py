"""Hypergradients by exact reversal: the one entry point, the meta-parameters, the losses, the data and
the meta-optimiser (re-exported at the top level of ``exactrev``)."""

from .api import hypergradient, train
from .data import Dataset, Split, load_digits
from .meta import AdamMetaParams, HypergradResult, MetaParams, initial_weights
from .losses import MLPTrainingLoss, MLPValidationLoss, RowTerm
from .meta_train import InitialSettingsError, MetaAdam, MetaDivergenceError, MetaTrainer, meta_train

__all__ = ["hypergradient", "train", "Dataset", "Split", "load_digits", "HypergradResult", "MetaParams",
           "initial_weights", "AdamMetaParams", "MLPTrainingLoss", "MLPValidationLoss", "RowTerm",
           "MetaAdam", "meta_train", "MetaTrainer", "InitialSettingsError", "MetaDivergenceError"]
