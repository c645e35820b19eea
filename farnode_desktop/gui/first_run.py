"""First run: detect GPUs, choose the network, set up the wallet and the engine, start. Every step can be
skipped (and done later from the pages); closing the wizard keeps the defaults and never shows it again."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.app_core import AppCore
from farnode_desktop.core.gpu.report import GpuReport
from farnode_desktop.core.node.engine_venv import EngineStatus
from farnode_desktop.core.settings import CUSTOM_SWARM, LOCAL_SWARM, PUBLIC_SWARM
from farnode_desktop.gui.bridge import BusBridge, TaskRunner
from farnode_desktop.gui.errors import show_error


def _label(text: str) -> QLabel:
    lab = QLabel(text)
    lab.setWordWrap(True)
    return lab


class GpuStep(QWizardPage):
    def __init__(self, core: AppCore, tasks: TaskRunner) -> None:
        super().__init__()
        self.setTitle("Your GPUs")
        self.setSubTitle("FarNode lends your NVIDIA GPU to the FarMesh network while you do not need it.")
        self.core, self.tasks = core, tasks
        self.result = _label("Looking for NVIDIA GPUs…")
        QVBoxLayout(self).addWidget(self.result)
        self.report: GpuReport | None = None

    def initializePage(self) -> None:  # noqa: N802 (Qt API)
        self.tasks.run(self.core.gpu_report, self._show, lambda e, tb: self.result.setText(f"GPU check failed: {e}"))

    def _show(self, r: GpuReport) -> None:
        self.report = r
        if not r.inventory.gpus:
            self.result.setText(f"<b>{r.inventory.error_title or 'No NVIDIA GPU'}</b><br>{r.inventory.error}<br><br>"
                                "You can still try FarNode on the local demo swarm: it runs on the CPU.")
            return
        rows = "".join(f"<li>{g.name}: {'can serve' if r.eligibility.get(g.uuid, (False, ''))[0] else 'cannot serve'}"
                       f" ({r.eligibility.get(g.uuid, (False, ''))[1]})</li>" for g in r.inventory.gpus)
        self.result.setText(f"Found {len(r.inventory.gpus)} GPU(s):<ul>{rows}</ul>")


class NetworkStep(QWizardPage):
    def __init__(self, core: AppCore) -> None:
        super().__init__()
        self.setTitle("Network")
        self.setSubTitle("Where your node serves. You can change this later in Settings.")
        layout = QVBoxLayout(self)
        self.group = QButtonGroup(self)
        self.local = QRadioButton("Local demo swarm: a private FarMesh network on this computer, with demo traffic "
                                  "(try it first)")
        self.public = QRadioButton("The public FarMesh network (earns rewards)")
        self.custom = QRadioButton("A FarMesh network I have peer addresses for:")
        for i, b in enumerate((self.local, self.public, self.custom)):
            self.group.addButton(b, i)
            layout.addWidget(b)
        self.peers = QPlainTextEdit()
        self.peers.setPlaceholderText("/ip4/…/tcp/…/p2p/Qm…  (one per line)")
        self.peers.setFixedHeight(60)
        layout.addWidget(self.peers)
        swarm = core.settings.network.swarm
        {LOCAL_SWARM: self.local, PUBLIC_SWARM: self.public, CUSTOM_SWARM: self.custom}.get(
            swarm, self.local).setChecked(True)

    def swarm(self) -> str:
        return [LOCAL_SWARM, PUBLIC_SWARM, CUSTOM_SWARM][max(0, self.group.checkedId())]

    def peer_list(self) -> list[str]:
        return [ln.strip() for ln in self.peers.toPlainText().splitlines() if ln.strip()]


class EngineStep(QWizardPage):
    def __init__(self, core: AppCore, tasks: TaskRunner, bridge: BusBridge) -> None:
        super().__init__()
        self.setTitle("Engine")
        self.setSubTitle("The engine runs the model. Setting it up installs about 1.5 GB once (more with an NVIDIA GPU); you can skip it "
                         "and it is set up when you first press Start.")
        self.core, self.tasks = core, tasks
        layout = QVBoxLayout(self)
        self.status = _label("Checking…")
        self.button = QPushButton("Set up the engine now")
        self.bar = QProgressBar()
        self.bar.setRange(0, 100)
        self.step = _label("")
        for w in (self.status, self.button, self.bar, self.step):
            layout.addWidget(w)
        self.button.clicked.connect(self.setup)
        bridge.progress.connect(self._progress)
        self.running = False

    def initializePage(self) -> None:  # noqa: N802 (Qt API)
        self.tasks.run(self.core.engine_status, self._status)

    def _status(self, st: EngineStatus) -> None:
        ready = st.ready
        self.status.setText("The engine is ready." if ready else "The engine is not set up yet.")
        self.bar.setValue(100 if ready else 0)
        self.button.setEnabled(not ready and not self.running)

    def setup(self) -> None:
        self.running = True
        self.button.setEnabled(False)
        self.tasks.run(self.core.repair_engine,
                       self._done, self._failed)

    def _progress(self, p: C.EngineProgress) -> None:
        self.bar.setValue(int(p.percent))
        self.step.setText(p.step)

    def _done(self, _r: object) -> None:
        self.running = False
        self.tasks.run(self.core.engine_status, self._status)

    def _failed(self, exc: BaseException, tb: str) -> None:
        self.running = False
        self.button.setEnabled(True)
        show_error(self, exc, tb)


class WalletStep(QWizardPage):
    """The Wallet page itself, inside the wizard: create, import, or skip."""

    def __init__(self, core: AppCore, tasks: TaskRunner, bridge: BusBridge) -> None:
        super().__init__()
        from farnode_desktop.gui.pages.wallet import WalletPage

        self.setTitle("Payout wallet")
        self.setSubTitle("Rewards are paid to a wallet whose key stays in your system's keyring. Create one, "
                         "import yours, or skip this and do it later on the Wallet page.")
        self.page = WalletPage(core, bridge, tasks, header=False)
        self.page.layout().setContentsMargins(0, 0, 0, 0)
        QVBoxLayout(self).addWidget(self.page)


class FinishStep(QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Ready")
        layout = QVBoxLayout(self)
        layout.addWidget(_label("FarNode lives in the tray: its icon shows whether your node is online. Everything "
                                "you skipped can be done later from the pages on the left."))
        self.start = QCheckBox("Start contributing now")
        self.start.setChecked(True)
        layout.addWidget(self.start)


class FirstRunWizard(QWizard):
    """``finished_setup(start)`` after the wizard closes (settings saved either way)."""

    finished_setup = Signal(bool)

    def __init__(self, core: AppCore, tasks: TaskRunner, bridge: BusBridge, parent: QWidget | None = None,
                 wallet_step: QWizardPage | None = None) -> None:
        super().__init__(parent)
        self.core = core
        self.setWindowTitle("Welcome to FarNode")
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setOption(QWizard.WizardOption.HaveCustomButton1, True)
        self.setButtonText(QWizard.WizardButton.CustomButton1, "Skip")
        self.customButtonClicked.connect(lambda _b: self.next())
        self.gpu_step = GpuStep(core, tasks)
        self.network_step = NetworkStep(core)
        self.wallet_step = wallet_step if wallet_step is not None else WalletStep(core, tasks, bridge)
        self.engine_step = EngineStep(core, tasks, bridge)
        self.finish_step = FinishStep()
        for p in (self.gpu_step, self.network_step, self.wallet_step, self.engine_step, self.finish_step):
            if p is not None:
                self.addPage(p)
        self.resize(760, 520)
        self.finished.connect(self._finished)

    def _finished(self, result: int) -> None:
        s = self.core.settings
        swarm = self.network_step.swarm()
        peers = self.network_step.peer_list()
        net = replace(s.network, swarm=swarm, initial_peers=peers if swarm == CUSTOM_SWARM else s.network.initial_peers)
        try:
            self.core.save_settings(replace(s, network=net))
        except Exception as exc:  # e.g. custom network without peers: keep the defaults, say why
            show_error(self.parentWidget(), exc)
            try:
                self.core.save_settings(s)
            except Exception as exc2:
                show_error(self.parentWidget(), exc2)
                return
            self.finished_setup.emit(False)
            return
        self.finished_setup.emit(bool(result == QWizard.DialogCode.Accepted and self.finish_step.start.isChecked()))
