"""The Network page says what it shows: this node's bars green (as the note says), whole-block ticks, the
announced capacity named as such, wallet addresses shown as wallets, and a table that shows every row and fills
the width (offscreen Qt; the view is the probe's data type, built here as a probe would read it)."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QLabel, QScrollArea

from farnode_desktop.core.network.view import ModelView, ServerView
from farnode_desktop.gui.pages.network import (
    BAR_COLOR,
    COLUMNS,
    MINE_COLOR,
    ModelCard,
    block_tick_step,
    display_name,
)
from tests.gui.conftest import shot

WALLET = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def _model(n_servers: int = 3) -> ModelView:
    servers = [ServerView("12D3KooWMine" + "a" * 20, (2, 3, 4, 5), "online", 2564.0, public_name=WALLET,
                          version="2.3.0.dev2", using_relay=False, cache_tokens_left=16384, mine=True),
               ServerView("12D3KooWOther" + "b" * 20, (0, 1, 2, 3), "online", 1200.0, public_name="lab-gpu-1",
                          version="2.3.0.dev2", using_relay=True, cache_tokens_left=8000)]
    servers += [ServerView(f"12D3KooWMore{i:02d}" + "c" * 18, (6, 7), "online", 900.0, version="2.3.0.dev2")
                for i in range(n_servers - 2)]
    per_block = tuple(sum(1 for s in servers if b in s.blocks) for b in range(8))
    thr = tuple(sum(s.throughput for s in servers if b in s.blocks) for b in range(8))
    return ModelView("tiny-llama", 8, "", tuple(servers), per_block, thr)


def _card(qtbot, model: ModelView, width: int) -> tuple[QScrollArea, ModelCard]:
    card = ModelCard(model)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(card)
    qtbot.addWidget(scroll)
    scroll.resize(width, 900)
    scroll.show()
    qtbot.waitExposed(scroll)
    qtbot.wait(50)
    return scroll, card


def test_this_nodes_blocks_are_green_and_the_axis_counts_whole_blocks(qtbot, artifacts_dir):
    scroll, card = _card(qtbot, _model(), 1000)
    brushes = card.chart.bars.opts["brushes"]
    colours = [b.color().name() for b in brushes]
    assert colours == [BAR_COLOR] * 2 + [MINE_COLOR] * 4 + [BAR_COLOR] * 2  # blocks 2-5 are this node's
    assert any("blocks 2–5 (green bars)" in w.text() for w in card.findChildren(QLabel))  # what the note says
    ticks = [v for _spacing, values in card.chart.getPlotItem().getAxis("bottom").tickValues(-0.6, 7.6, 600)
             for v in values]
    assert ticks and all(float(v).is_integer() for v in ticks)  # no half blocks
    shot(scroll, artifacts_dir, "gui-network-card.png")


@pytest.mark.parametrize(("n", "step"), [(4, 1), (16, 1), (32, 2), (80, 5), (200, 20)])
def test_block_tick_step(n, step):
    assert block_tick_step(n) == step


def test_columns_say_what_they_are_and_wallets_read_as_wallets(qtbot):
    _scroll, card = _card(qtbot, _model(), 1000)
    assert "Tokens/s" not in COLUMNS and "Announced tok/s" in COLUMNS
    header = card.table.horizontalHeaderItem(COLUMNS.index("Announced tok/s"))
    assert "capacity" in header.toolTip()
    names = [card.table.item(r, COLUMNS.index("Name")).text() for r in range(card.table.rowCount())]
    assert names[0] == "wallet 0x5aAe…eAed" and names[1] == "lab-gpu-1" and names[2] == "–"
    assert card.table.item(0, COLUMNS.index("Name")).toolTip() == WALLET
    assert display_name("0x1234") == "0x1234"  # not an address: as announced


@pytest.mark.parametrize("width", [560, 1600])
def test_the_table_shows_every_row_and_fills_the_width(qtbot, artifacts_dir, width):
    _scroll, card = _card(qtbot, _model(12), width)
    t = card.table
    rows = sum(t.rowHeight(r) for r in range(t.rowCount()))
    assert t.viewport().height() >= rows  # nothing cut off at the bottom
    assert t.height() <= t.horizontalHeader().height() + rows + t.horizontalScrollBar().sizeHint().height() + 8
    if width > 1000:  # a wide window: the columns use the whole width
        assert t.horizontalHeader().length() == pytest.approx(t.viewport().width(), abs=2)
    shot(_scroll, artifacts_dir, f"gui-network-table-{width}.png")
