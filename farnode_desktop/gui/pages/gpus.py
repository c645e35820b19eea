"""GPUs: a card per NVIDIA GPU with live telemetry, whether it can serve and why, and a contribute switch."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGridLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.app_core import AppCore
from farnode_desktop.core.gpu.inventory import GpuInfo
from farnode_desktop.core.gpu.report import GpuReport
from farnode_desktop.gui.bridge import BusBridge, TaskRunner
from farnode_desktop.gui.errors import show_error
from farnode_desktop.gui.widgets import Notice, dim, page_header


def _na(v: float | None, fmt: str) -> str:
    return "n/a" if v is None else fmt.format(v)


class GpuCard(QFrame):
    def __init__(self, gpu: GpuInfo, eligible: bool, reason: str, contributing: bool) -> None:
        super().__init__()
        self.uuid = gpu.uuid
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        name = QLabel(f"<b>GPU {gpu.index}: {gpu.name}</b>")
        mem = _na(gpu.memory_total_mib, "{:,.0f} MiB")
        info = QLabel(f"{mem} memory · compute capability {gpu.cc_str}")
        dim(info)
        self.live = QLabel("waiting for telemetry…")
        self.eligible = QLabel(("✔ can serve: " if eligible else "✖ cannot serve: ") + reason)
        self.eligible.setWordWrap(True)
        self.eligible.setStyleSheet(f"color: {'#27ae60' if eligible else '#d63031'};")
        self.contribute = QCheckBox("Contribute this GPU")
        self.contribute.setChecked(contributing and eligible)
        self.contribute.setEnabled(eligible)
        for w in (name, info, self.live, self.eligible, self.contribute):
            layout.addWidget(w)

    def set_telemetry(self, t: C.GpuTelemetry) -> None:
        if t.lost:
            self.live.setText("<span style='color:#d63031'>This GPU is lost (fell off the bus): restart the "
                              "computer.</span>")
            return
        self.live.setText(
            f"Load {_na(t.gpu_util_pct, '{:.0f} %')} · memory {_na(t.mem_used_mib, '{:,.0f}')}"
            f"/{_na(t.mem_total_mib, '{:,.0f} MiB')} · {_na(t.temperature_c, '{:.0f} °C')} · "
            f"{_na(t.power_w, '{:.0f} W')} · fan {_na(t.fan_pct, '{:.0f} %')}")


class GpusPage(QWidget):
    def __init__(self, core: AppCore, bridge: BusBridge, tasks: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.core, self.tasks = core, tasks
        self.cards: dict[str, GpuCard] = {}
        self.report: GpuReport | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 14, 18, 14)
        layout.addWidget(page_header("GPUs", "NVIDIA GPUs in this computer, what each can serve, and which "
                                              "ones contribute."))
        self.none_notice = Notice("#e0a100")
        layout.addWidget(self.none_notice)
        self.summary = QLabel("Looking for GPUs…")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.refresh_button = QPushButton("Look again")
        self.refresh_button.clicked.connect(self.refresh)
        layout.addWidget(self.refresh_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.grid_host = QWidget()
        host_layout = QVBoxLayout(self.grid_host)
        host_layout.setContentsMargins(0, 0, 0, 0)
        self.grid = QGridLayout()
        host_layout.addLayout(self.grid)
        host_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.grid_host)
        layout.addWidget(scroll, 1)
        bridge.telemetry.connect(self._on_telemetry)
        self._loaded = False

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        if not self._loaded:
            self.refresh()

    def refresh(self) -> None:
        self._loaded = True
        self.refresh_button.setEnabled(False)
        self.tasks.run(self.core.gpu_report, self.set_report, self._failed)

    def _failed(self, exc: BaseException, tb: str) -> None:
        self.refresh_button.setEnabled(True)
        show_error(self, exc, tb)

    def set_report(self, report: GpuReport) -> None:
        self.refresh_button.setEnabled(True)
        self.report = report
        for card in self.cards.values():
            card.setParent(None)
            card.deleteLater()
        self.cards.clear()
        inv = report.inventory
        if not inv.gpus:
            self.none_notice.show_message(inv.error_title or "No NVIDIA GPU",
                                          (inv.error or "No NVIDIA GPU was found.") +
                                          "\n\nThe local demo swarm still runs on the CPU.", links=True)
            self.summary.setText("No GPU can contribute on this computer right now.")
            return
        self.none_notice.hide()
        self.summary.setText(f"NVIDIA driver {inv.driver_version or 'n/a'}, CUDA {inv.cuda_version or 'n/a'}. "
                             f"{len(inv.gpus)} GPU(s).")
        wanted = set(report.contributing)
        for i, g in enumerate(inv.gpus):
            ok, reason = report.eligibility.get(g.uuid, (False, "unknown"))
            card = GpuCard(g, ok, reason, not wanted or g.uuid in wanted)
            card.contribute.toggled.connect(lambda on, u=g.uuid: self._set_contributing(u, on))
            self.grid.addWidget(card, i // 2, i % 2)
            self.cards[g.uuid] = card

    def _set_contributing(self, uuid: str, on: bool) -> None:
        uuids = [g.uuid for g in self.report.inventory.gpus] if self.report else [uuid]
        try:
            self.core.set_gpu_contributing(uuid, on, uuids)
        except Exception as exc:  # shown; the box goes back to what is saved
            card = self.cards.get(uuid)
            if card is not None:
                card.contribute.blockSignals(True)
                card.contribute.setChecked(not on)
                card.contribute.blockSignals(False)
            show_error(self, exc)

    def _on_telemetry(self, snap: tuple) -> None:
        if not self.isVisible():
            return
        for t in snap:
            card = self.cards.get(t.uuid)
            if card is not None:
                card.set_telemetry(t)
