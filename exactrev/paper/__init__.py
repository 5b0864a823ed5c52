"""The other experiments of Maclaurin, Duvenaud & Adams 2015, as jobs on the bundled digits:

- ``distill``    learning the training set: 10 synthetic images, one per class (``distill.py``);
- ``regularize`` one L2 penalty per weight of a logistic regression (``regularize.py``);
- ``sharing``    a learned penalty that couples the weights of related tasks (``sharing.py``).

Each meta-learns with exact hypergradients (``exactrev.hypergradient`` inside ``exactrev.meta_train``),
compares with a baseline of the same budget, and returns a JSON-ready dict; ``exactrev.faces``
writes the files and pictures.
"""
