"""Data-parallel exact reversal over MPI (mpi4py): integer all-reduces, a sharded buffer.

- ``comm.py``: the communicator (``mpi4py``'s, or ``SelfComm`` for one process without MPI) and
  ``agree``, which makes a failure on one rank the same exception on every rank;
- ``data_parallel.py``: ``DataParallelLoss``, the MLP training loss whose gradient, Hessian-vector
  product and mixed terms are sums of fixed-point integers over fixed chunks of the batch, so every
  rank count gives the same bits;
- ``sharded.py``: ``ShardedSGD``, reversible momentum SGD whose weights, velocity and buffer lanes are
  split across ranks, exchanging the new weights as integers after every step.

``exactrev.hypergradient(..., comm=...)`` and ``exactrev.train(..., comm=...)`` use them;
``mpiexec -n 4 exactrev hyperopt`` runs the main job this way (docs/scale.md).
"""
