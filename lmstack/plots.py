"""Plots as files: matplotlib on the Agg backend, imported on first use; atomic PNG writes; Chinese labels drawn
with an installed Han font (DejaVu Sans, matplotlib's default, has no Han glyphs and draws boxes)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from lmstack.io import atomic_path
from lmstack.text.han import has_han

# Fonts with Han glyphs, in order of preference; the first installed one goes before DejaVu Sans.
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
             "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC", "AR PL UMing CN", "Droid Sans Fallback")
_warned = False


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported on first use (commands start without it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, dpi: int = 110) -> None:
    """Write ``fig`` to ``path`` atomically as a PNG, and release it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)


def han_fonts(labels: Iterable[str]) -> str | None:
    """When a label holds Chinese, put the first installed Han font first and return its name; with none
    installed, warn once (install e.g. fonts-noto-cjk) and return None."""
    global _warned
    if not any(has_han(label) for label in labels):
        return None
    plt = pyplot()
    installed = {f.name for f in plt.matplotlib.font_manager.fontManager.ttflist}
    found = [name for name in CJK_FONTS if name in installed]
    if not found:
        if not _warned:
            print("warning: no font with Chinese glyphs is installed, so Chinese labels in plots draw as boxes "
                  "(install one, e.g. fonts-noto-cjk)", file=sys.stderr)
            _warned = True
        return None
    rc = plt.rcParams
    rc["font.sans-serif"] = found + [f for f in rc["font.sans-serif"] if f not in found]
    rc["font.family"] = "sans-serif"
    return found[0]
