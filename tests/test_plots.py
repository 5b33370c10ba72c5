"""Plots with Chinese labels: the first installed Han font goes first; with none installed, one warning."""

from __future__ import annotations

import pytest
from matplotlib import font_manager

from lmstack import plots


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(plots, "_warned", False)
    plt = plots.pyplot()
    with plt.rc_context():
        yield plt


def test_han_font_is_put_first_when_a_label_has_chinese(fresh, monkeypatch):
    fake = font_manager.FontEntry(fname="/nonexistent/wqy.ttc", name="WenQuanYi Zen Hei")
    monkeypatch.setattr(font_manager.fontManager, "ttflist", [*font_manager.fontManager.ttflist, fake])
    assert plots.han_fonts(["accuracy", "loss"]) is None  # no Chinese: nothing changes
    assert fresh.rcParams["font.sans-serif"][0] != "WenQuanYi Zen Hei"
    assert plots.han_fonts(["accuracy", "准确率"]) == "WenQuanYi Zen Hei"
    assert fresh.rcParams["font.sans-serif"][0] == "WenQuanYi Zen Hei"
    assert fresh.rcParams["font.family"] == ["sans-serif"]


def test_without_a_han_font_it_warns_once_and_still_draws(fresh, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(font_manager.fontManager, "ttflist",
                        [f for f in font_manager.fontManager.ttflist if f.name not in plots.CJK_FONTS])
    assert plots.han_fonts(["准确率"]) is None
    assert plots.han_fonts(["损失"]) is None
    assert capsys.readouterr().err.count("no font with Chinese glyphs") == 1
    fig, ax = fresh.subplots()
    ax.set_title("准确率 accuracy")
    plots.save_png(fig, tmp_path / "zh.png")
    assert (tmp_path / "zh.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
