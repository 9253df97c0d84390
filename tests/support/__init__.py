"""Helpers the tests share: paths, numerics, NumPy references, child
processes, the paper's learning rate, small models and data, and the
scripts tests run in their own processes (`scripts/distributed_worker.py`,
`scripts/serving_client.py`).

`tests/` is on `sys.path` (pyproject's `pythonpath`), so a test imports
these as `from support.numerics import to_numpy`. Test modules never import
each other; what two of them need lives here, and fixtures live in the
`conftest.py` files.
"""
