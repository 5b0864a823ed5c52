"""exactrev: bit-exactly reversible neural-network training for exact hypergradients.

Layers (each imports only those below it):
    kernels/  Numba kernels on integer arrays (rANS lanes, fixed point, momentum steps)
    exact/    validated primitives: FixedFormat, rational momenta, InfoBuffer
    optim/    reversible optimisers and their schedules
    model/    MLP forward/backward/HVP
    hyper/    hypergradients by exact reversal, meta-optimisation, data
    parallel/ data-parallel training and reversal on MPI (integer all-reduce, sharded buffer)
    paper/    the paper's other experiments (distill, regularize, sharing) as jobs
    faces/    command line, benchmark report, plots
"""

from .exact.buffer import (BufferFileError, BufferMismatchError, BufferUnderflowError, InfoBuffer,
                           ReversalUnderflowError)
from .exact.fixedpoint import DEFAULT_FRAC_BITS, FixedFormat, FixedPointRangeError
from .exact.rational import MAX_DENOMINATOR, HyperparameterError, as_momentum
from .optim.adam import AdamSchedule, ReversibleAdam
from .optim.nesterov import ReversibleNesterov
from .optim.schedule import MomentumSchedule
from .optim.sgd import PlainFixedSGD, ReversibleSGD, StepError
from .model.mlp import MLP
from .hyper import (AdamMetaParams, Dataset, HypergradResult, InitialSettingsError, MetaAdam,
                    MetaDivergenceError, MetaParams, MetaTrainer, MLPTrainingLoss, MLPValidationLoss, RowTerm,
                    Split, hypergradient, initial_weights, load_digits, meta_train, train)

__version__ = "0.1.0"

__all__ = [
    "BufferFileError", "BufferMismatchError", "BufferUnderflowError", "InfoBuffer", "ReversalUnderflowError",
    "DEFAULT_FRAC_BITS", "FixedFormat", "FixedPointRangeError", "MAX_DENOMINATOR",
    "HyperparameterError", "as_momentum", "MomentumSchedule", "ReversibleSGD", "StepError",
    "AdamSchedule", "ReversibleAdam", "PlainFixedSGD", "ReversibleNesterov",
    "MLP", "hypergradient", "MetaParams", "AdamMetaParams", "HypergradResult", "MetaAdam", "initial_weights",
    "MLPTrainingLoss", "MLPValidationLoss", "RowTerm", "Dataset", "Split", "load_digits", "train",
    "meta_train", "MetaTrainer", "InitialSettingsError", "MetaDivergenceError",
]
