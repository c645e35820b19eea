"""First run: detect GPUs, choose the network, set up the wallet and the engine, start. Every step can be
skipped (and done later from the pages); closing the wizard keeps the defaults and never shows it again."""

from __future__ import annotations

import html
from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
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
from farnode_desktop.gui.errors import PROBLEM_COLOUR, show_error
from farnode_desktop.gui.widgets import dim, linked


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
        self.result.setTextFormat(Qt.TextFormat.RichText)
        self.result.setOpenExternalLinks(True)  # the driver's download page, from the error text
        QVBoxLayout(self).addWidget(self.result)
        self.report: GpuReport | None = None

    def initializePage(self) -> None:  # noqa: N802 (Qt API)
        self.tasks.run(self.core.gpu_report, self._show, lambda e, tb: self.result.setText(f"GPU check failed: {e}"))

    def _show(self, r: GpuReport) -> None:
        self.report = r
        if not r.inventory.gpus:
            self.result.setText(f"<b>{html.escape(r.inventory.error_title or 'No NVIDIA GPU')}</b><br>"
                                f"{linked(r.inventory.error)}<br><br>"
                                "You can still try FarNode on the local demo swarm: it runs on the CPU.")
            return
        rows = "".join(f"<li>{g.name}: {'can serve' if r.eligibility.get(g.uuid, (False, ''))[0] else 'cannot serve'}"
                       f" ({r.eligibility.get(g.uuid, (False, ''))[1]})</li>" for g in r.inventory.gpus)
        self.result.setText(f"Found {len(r.inventory.gpus)} GPU(s):<ul>{rows}</ul>")


class NetworkStep(QWizardPage):
    """Where the node serves: the embedded default, the public network, or a network joined from the file (or
    link) its operator publishes: peers, model and payouts in one go, checked before the wizard goes on."""

    def __init__(self, core: AppCore, tasks: TaskRunner) -> None:
        super().__init__()
        self.core, self.tasks = core, tasks
        self.setTitle("Network")
        self.setSubTitle("Where your node serves. You can change this later in Settings.")
        layout = QVBoxLayout(self)
        self.group = QButtonGroup(self)
        self.local = QRadioButton("Local demo swarm (try it first)")
        self.public = QRadioButton("The public FarMesh network (earns rewards)")
        self.custom = QRadioButton("Join a network from its network file:")
        hints = ("A private FarMesh network on this computer, with demo traffic and a local chain that pays for it.",
                 "", "A file or a link the network's operator publishes: its peers, model and payouts in one go.")
        for i, (b, hint) in enumerate(zip((self.local, self.public, self.custom), hints, strict=True)):
            self.group.addButton(b, i)
            layout.addWidget(b)
            if hint:  # radio buttons do not wrap: the longer words go beneath, indented (800x600 screens)
                lab = dim(_label(hint))
                lab.setContentsMargins(22, 0, 0, 4)
                layout.addWidget(lab)
        row = QHBoxLayout()
        self.source = QLineEdit()
        self.source.setPlaceholderText("https://…/network.json, or open the file")
        self.source.textEdited.connect(lambda _t: (self.custom.setChecked(True), self.problem.setText("")))
        self.browse = QPushButton("Open file…")
        self.browse.clicked.connect(self._browse)
        row.addWidget(self.source, 1)
        row.addWidget(self.browse)
        layout.addLayout(row)
        self.problem = QLabel("")
        self.problem.setWordWrap(True)
        layout.addWidget(self.problem)
        layout.addStretch(1)
        self.joined: str | None = None  # the name of the network joined in this wizard
        self._joined_source = ""
        self._checking = False
        self._skipped = False  # Skip pressed: the next validation lets the page go as it is
        swarm = core.settings.network.swarm
        {LOCAL_SWARM: self.local, PUBLIC_SWARM: self.public, CUSTOM_SWARM: self.custom}.get(
            swarm, self.local).setChecked(True)

    def swarm(self) -> str:
        return [LOCAL_SWARM, PUBLIC_SWARM, CUSTOM_SWARM][max(0, self.group.checkedId())]

    def _browse(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self, "Network file", "", "Network files (*.json);;All files (*)")
        if path:
            self.source.setText(path)
            self.custom.setChecked(True)
            self.problem.setText("")

    def skip(self) -> bool:
        """Skip: the network stays as it is (a network file typed but not joined is left alone). False while
        a file is being checked."""
        if self._checking:
            return False
        swarm = self.core.settings.network.swarm
        {LOCAL_SWARM: self.local, PUBLIC_SWARM: self.public, CUSTOM_SWARM: self.custom}.get(
            swarm, self.local).setChecked(True)
        self._skipped = True
        self._say("")
        return True

    def validatePage(self) -> bool:  # noqa: N802 (Qt API)
        """A network file is checked (its model, its payout chain: seconds, off the GUI thread) and joined
        before the wizard goes on; the wizard moves on by itself once it is."""
        source = self.source.text().strip()
        skipped, self._skipped = self._skipped, False
        if skipped or self.swarm() != CUSTOM_SWARM or (self.joined is not None and source == self._joined_source):
            return True
        if self._checking:
            return False
        if not source:
            self._say("Open the network's file or paste its link, or choose another network.", problem=True)
            return False
        self._checking = True
        self.source.setEnabled(False)
        self.browse.setEnabled(False)
        self._say("Checking the network file…")
        self.tasks.run(lambda: self._check_and_join(source), lambda d: self._joined(d, source), self._failed)
        return False

    def _check_and_join(self, source: str) -> object:
        """Worker thread: the file's checks (its model, its payout chain; nothing written before), then the join."""
        return self.core.join_network(source)

    def _joined(self, desc: object, source: str) -> None:
        self._checking = False
        self.source.setEnabled(True)
        self.browse.setEnabled(True)
        self.joined, self._joined_source = str(getattr(desc, "name", "")), source
        self._say(f"Joined the network {self.joined!r}: its peers, model and payouts are saved.")
        wizard = self.wizard()
        if wizard is not None and wizard.currentPage() is self:
            wizard.next()

    def _failed(self, exc: BaseException, tb: str) -> None:
        self._checking = False
        self.source.setEnabled(True)
        self.browse.setEnabled(True)
        problems = getattr(exc, "problems", None)
        if problems is None:
            self._say("")
            show_error(self, exc, tb)
            return
        self._say("This network file cannot be used (nothing was changed):\n" + "\n".join(problems), problem=True)

    def _say(self, text: str, *, problem: bool = False) -> None:
        self.problem.setStyleSheet(f"color: {PROBLEM_COLOUR};" if problem else "")
        self.problem.setText(text)


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
        self.setSubTitle("You can change everything later.")
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
        self.customButtonClicked.connect(self.skip)
        self.gpu_step = GpuStep(core, tasks)
        self.network_step = NetworkStep(core, tasks)
        self.wallet_step = wallet_step if wallet_step is not None else WalletStep(core, tasks, bridge)
        self.engine_step = EngineStep(core, tasks, bridge)
        self.finish_step = FinishStep()
        for p in (self.gpu_step, self.network_step, self.wallet_step, self.engine_step, self.finish_step):
            if p is not None:
                self.addPage(p)
        pages = [self.page(i) for i in self.pageIds()]
        for n, p in enumerate(pages, 1):
            p.setSubTitle(f"Step {n} of {len(pages)}. {p.subTitle()}".rstrip())
        self.currentIdChanged.connect(self._buttons_for)
        self.resize(760, 520)
        self.finished.connect(self._finished)

    def skip(self) -> None:
        """Skip this step: on the network step the network stays as it is, whatever was typed."""
        if self.currentPage() is self.network_step and not self.network_step.skip():
            return
        self.next()

    def _buttons_for(self, page_id: int) -> None:
        """Skip beside Next; none on the last page (where Finish is)."""
        last = page_id == (self.pageIds() or [-1])[-1]
        B = QWizard.WizardButton
        layout = [B.Stretch, B.BackButton, B.NextButton, B.FinishButton, B.CancelButton]
        if not last:
            layout.insert(1, B.CustomButton1)
        self.setButtonLayout(layout)

    def _finished(self, result: int) -> None:
        s = self.core.settings
        swarm = self.network_step.swarm()
        if swarm == CUSTOM_SWARM and self.network_step.joined is None:
            swarm = s.network.swarm  # no network file was joined: the network stays as it was
        try:
            # a joined network's file already saved its settings (self.core.settings holds them)
            self.core.save_settings(s if swarm == CUSTOM_SWARM else replace(s, network=replace(s.network, swarm=swarm)))
        except Exception as exc:
            show_error(self.parentWidget(), exc)
            self.finished_setup.emit(False)
            return
        self.finished_setup.emit(bool(result == QWizard.DialogCode.Accepted and self.finish_step.start.isChecked()))
