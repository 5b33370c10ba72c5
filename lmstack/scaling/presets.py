"""Published L(N, D) constants, usable without a fit of one's own (``lmstack scaling plan --preset``).

- ``chinchilla``: Hoffmann et al. (2022), approach 3, at the precision of the arXiv TeX source (E 1.6934,
  A 406.4, B 410.7, alpha 0.3392, beta 0.2849), as quoted by Besiroglu et al. (2024, section 2). These reproduce
  the paper's own approach-3 allocations (Table A3) to within 8% in N; the rounded values of the paper's body
  (eq. 10) do not (N about 20-30% low), which is Besiroglu et al.'s point about rounding.
- ``chinchilla-rounded``: eq. 10 as printed: E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28.
- ``epoch``: Besiroglu, Erdil, Barnett & You (2024), "Chinchilla Scaling: A replication attempt"
  (arXiv:2404.10102): E 1.8172, A 482.01, B 2085.43, alpha 0.3478, beta 0.3658 (Huber delta 1e-3, summed,
  on data read off Hoffmann et al.'s Figure 4); about 20 tokens per parameter at compute-optimality.
"""

from __future__ import annotations

from lmstack.errors import LmstackError
from lmstack.scaling.laws import LossLaw

PRESETS: dict[str, LossLaw] = {
    "chinchilla": LossLaw(E=1.6934, A=406.4, B=410.7, alpha=0.3392, beta=0.2849),
    "chinchilla-rounded": LossLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
    "epoch": LossLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658),
}


def preset(name: str) -> LossLaw:
    """The published law called ``name``."""
    if name not in PRESETS:
        raise LmstackError(f"--preset: unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
