"""Shims for removed third-party APIs, applied by the module that uses the library that
needs them (not as a side effect of ``import ifr``).

- ``numpy.asfarray`` was removed in NumPy 2; py-motmetrics 1.4.0 (the newest release)
  still calls it: applied by ``ifr/evaluation/tracking.py``, the one user of motmetrics.
"""

import numpy as np


def apply_compat_shims() -> None:
    if not hasattr(np, "asfarray"):

        def asfarray(a, dtype=np.float64):
            if not np.issubdtype(np.dtype(dtype), np.inexact):
                dtype = np.float64
            return np.asarray(a, dtype=dtype)

        np.asfarray = asfarray
