"""numpy's C functions themselves, for per-frame work on a few hundred samples, where the
Python wrappers (argument checks and dispatch) cost as much as the work: `np.clip` about
2 µs a call, three times the clipping. Same results: the wrappers only check and dispatch.
"""

from __future__ import annotations

try:
    from numpy._core.multiarray import c_einsum as einsum
    from numpy._core.multiarray import correlate2 as correlate
    from numpy._core.umath import clip
except ImportError:  # numpy < 2
    from numpy.core.multiarray import c_einsum as einsum
    from numpy.core.multiarray import correlate2 as correlate
    from numpy.core.umath import clip

__all__ = ["clip", "correlate", "einsum"]
