"""Settings: network and model, GPUs and blocks, limits (pause policies), start at login, engine repair."""

from __future__ import annotations

import re
from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.app_core import AppCore
from farnode_desktop.core.errors import SettingsError
from farnode_desktop.core.node.engine_venv import EngineStatus
from farnode_desktop.core.settings import (
    CUSTOM_SWARM,
    LOCAL_SWARM,
    PUBLIC_SWARM,
    Settings,
    ignored_changes,
    parse_setting,
)
from farnode_desktop.gui.bridge import BusBridge, TaskRunner
from farnode_desktop.gui.errors import PROBLEM_COLOUR, show_error
from farnode_desktop.gui.widgets import ComboBox, DoubleSpinBox, SpinBox, dim, page_header

SWARMS = [(LOCAL_SWARM, "Local demo swarm (on this computer)"), (PUBLIC_SWARM, "Public FarMesh network"),
          (CUSTOM_SWARM, "Custom network (initial peers)")]


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


#: The widest range a spin box takes: what is typed goes in whole, and the settings' own checks (the same as
#: ``farnode-desktop settings set``) say what is wrong with it; a narrower range would drop a typed digit.
INT_MAX = 2**31 - 1
#: The engine environment on disk (measured: the CPU build 1.34 GB installed with uv, 1.49 GB with pip; the CUDA
#: build adds the CUDA torch and its nvidia-* wheels)
ENGINE_SIZE = {"cpu": "about 1.5 GB", "cuda": "several GB: CUDA torch and its NVIDIA libraries"}
# Problems whose message does not start with the setting's name, and the field they belong to.
_PROBLEM_PREFIXES = {"peer address": "network.initial_peers",
                     "policies: the resume temperature": "policies.temperature_low_c",
                     "policies: pausing for GPU programs": "policies.pause_for_gpu_programs"}
_SETTING_NAME = re.compile(r"^([a-z_]+\.[a-z_0-9]+)")


def problem_key(message: str) -> str:
    """The setting (``network.port``) a problem of the settings' checks is about, or "" when it names none."""
    for prefix, key in _PROBLEM_PREFIXES.items():
        if message.startswith(prefix):
            return key
    m = _SETTING_NAME.match(message)
    return m.group(1) if m else ""


def _spin(lo: int, hi: int, suffix: str = "", special: str = "") -> QSpinBox:
    s = SpinBox()
    s.setRange(lo, hi)
    if suffix:
        s.setSuffix(suffix)
    if special:
        s.setSpecialValueText(special)
    return s


def _dspin(lo: float, hi: float, suffix: str = "", decimals: int = 1) -> DoubleSpinBox:
    s = DoubleSpinBox()
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    if suffix:
        s.setSuffix(suffix)
    return s


class SettingsPage(QWidget):
    def __init__(self, core: AppCore, bridge: BusBridge, tasks: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.core, self.tasks = core, tasks
        outer = QVBoxLayout(self)
        outer.setContentsMargins(18, 14, 18, 14)
        outer.addWidget(page_header("Settings", "Network changes apply the next time the node starts."))
        body = QWidget()
        col = QVBoxLayout(body)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # the form fits the width
        scroll.setWidget(body)
        self.scroll = scroll
        outer.addWidget(scroll, 1)
        self.problem_labels: dict[str, QLabel] = {}
        self._parse_problems: list[str] = []
        self._loading = False

        # -- network
        net = QGroupBox("Network and model")
        f = QFormLayout(net)
        self.swarm = ComboBox()
        for key, label in SWARMS:
            self.swarm.addItem(label, key)
        self.swarm.currentIndexChanged.connect(self._swarm_changed)
        self.model = QLineEdit()
        self.model.setPlaceholderText("the demo model on the local swarm; a model id or folder otherwise")
        self.peers = QPlainTextEdit()
        self.peers.setPlaceholderText("/ip4/203.0.113.5/tcp/31337/p2p/Qm…  (one per line)")
        self.peers.setFixedHeight(64)
        self.port = _spin(0, INT_MAX, special="pick a free port")
        self.public_name = QLineEdit()
        self.public_name.setPlaceholderText("empty: your wallet address")
        self.traffic = _dspin(-1e9, 1e9, " requests/min")
        self.host = QLineEdit()
        self.host.setPlaceholderText("empty: every interface (127.0.0.1 on the local swarm)")
        self.announce = QLineEdit()
        self.announce.setPlaceholderText("empty: automatic (your public IP or name if you forward the port)")
        self.nat = QCheckBox("Port mapping (UPnP), AutoNAT and relays")
        self.nat.setToolTip("Router port mapping (UPnP/NAT-PMP), AutoNAT and relays for the node's connections. "
                            "Turn it off for a network that lives on a LAN.")
        self.hf_token = QLineEdit()
        self.hf_token.setEchoMode(QLineEdit.EchoMode.Password)
        self.hf_token.setPlaceholderText("hf_… (kept in the OS keyring, never in this file)")
        self.hf_token_status = QLabel("")
        dim(self.hf_token_status)
        self.hf_token_status.setWordWrap(True)  # "no usable keyring ..." is long: it wraps, never widens the page
        token_row = QHBoxLayout()
        token_row.addWidget(self.hf_token, 1)
        self.hf_token_save = QPushButton("Save token")
        self.hf_token_save.clicked.connect(self.save_hf_token)
        self.hf_token_remove = QPushButton("Remove")
        self.hf_token_remove.clicked.connect(self.remove_hf_token)
        token_row.addWidget(self.hf_token_save)
        token_row.addWidget(self.hf_token_remove)
        f.addRow("Network", self._field("network.swarm", self.swarm))
        f.addRow("Model", self._field("network.model", self.model))
        f.addRow("Hugging Face token", token_row)
        f.addRow("", self.hf_token_status)
        f.addRow("Initial peers", self._field("network.initial_peers", self.peers))
        f.addRow("Port", self._field("network.port", self.port))
        f.addRow("Listen address", self._field("network.host", self.host))
        f.addRow("Announced address", self._field("network.announce_address", self.announce))
        f.addRow("", self.nat)
        f.addRow("Public name", self._field("network.public_name", self.public_name))
        f.addRow("Demo traffic", self._field("network.demo_traffic_per_minute", self.traffic))
        col.addWidget(net)

        # -- GPUs
        gpu = QGroupBox("GPUs and blocks")
        f = QFormLayout(gpu)
        self.blocks = _spin(0, INT_MAX, special="automatic")
        self.quant = ComboBox()
        self.quant.addItems(["auto", "nf4", "int8", "none"])
        self.device = ComboBox()
        self.device.addItems(["auto", "cuda", "cpu"])
        self.reserve = _spin(-INT_MAX, INT_MAX, " MiB")
        self.dtype = ComboBox()
        self.dtype.addItems(["auto", "float32", "float16", "bfloat16"])
        self.dtype_effective = QLabel("")
        dim(self.dtype_effective)
        self.dtype_effective.setWordWrap(True)
        f.addRow("Blocks to serve", self._field("network.num_blocks", self.blocks))
        f.addRow("Quantization", self._field("network.quantization", self.quant))
        f.addRow("Compute dtype", self._field("network.torch_dtype", self.dtype))
        f.addRow("", self.dtype_effective)
        f.addRow("Device", self._field("network.device", self.device))
        f.addRow("Keep free for games", self._field("gpus.reserve_vram_mib", self.reserve))
        col.addWidget(gpu)

        # -- limits
        lim = QGroupBox("When to contribute")
        f = QFormLayout(lim)
        self.steam = QCheckBox("Pause while a Steam game runs")
        self.gpu_programs = QCheckBox("Pause while another program uses the GPU")
        self.programs_on = QCheckBox("Pause while one of these programs runs:")
        self.programs = QLineEdit()
        self.programs.setPlaceholderText("e.g. blender, obs64.exe (comma separated)")
        self.idle_only = QCheckBox("Only when I have been idle for")
        self.idle_minutes = _dspin(-1e9, 1e9, " min", 0)
        self.temp_on = QCheckBox("Pause when the GPU is hotter than")
        self.temp_high = _dspin(-1e9, 1e9, " °C", 0)
        self.temp_low = _dspin(-1e9, 1e9, " °C", 0)
        self.schedule_on = QCheckBox("Only inside these weekly windows:")
        self.schedule = QPlainTextEdit()
        self.schedule.setPlaceholderText("mon-fri 22:00-07:00\nweekends 00:00-24:00")
        self.schedule.setFixedHeight(56)
        f.addRow(self.steam)
        f.addRow(self._field("policies.pause_for_gpu_programs", self.gpu_programs))
        f.addRow(self.programs_on, self._field("policies.programs", self.programs))
        f.addRow(self.idle_only, self._field("policies.idle_minutes", self.idle_minutes))
        f.addRow(self.temp_on, self._field("policies.temperature_high_c", self.temp_high))
        f.addRow("…and resume below", self._field("policies.temperature_low_c", self.temp_low))
        f.addRow(self.schedule_on, self._field("policies.schedule", self.schedule))
        col.addWidget(lim)

        # -- earnings (chain)
        chain = QGroupBox("Earnings (chain)")
        f = QFormLayout(chain)
        self.rpc = QLineEdit()
        self.rpc.setPlaceholderText("https://… or http://127.0.0.1:8545")
        self.chain_id = QLineEdit()  # up to EIP-2294's 2^52 (more than a spin box holds)
        self.chain_id.setPlaceholderText("not set (e.g. 1 for Ethereum, 31337 for a local anvil)")
        self.token = QLineEdit()
        self.token.setPlaceholderText("0x… reward token (ERC-20) address")
        self.senders = QLineEdit()
        self.senders.setPlaceholderText("0x… payout sender address(es), comma separated")
        self.confirmations = _spin(-INT_MAX, INT_MAX, " blocks")
        self.rate = _dspin(-1e9, 1e9, " per 1,000 tokens", 6)
        f.addRow("RPC URL", self._field("chain.rpc_url", self.rpc))
        f.addRow("Chain id", self._field("chain.chain_id", self.chain_id))
        f.addRow("Reward token", self._field("chain.token_address", self.token))
        f.addRow("Payout senders", self._field("chain.payout_senders", self.senders))
        f.addRow("Confirmations", self._field("chain.confirmations", self.confirmations))
        f.addRow("Estimate rate", self._field("chain.reward_per_1k_tokens", self.rate))
        col.addWidget(chain)

        # -- start-up
        start = QGroupBox("Start-up")
        v = QVBoxLayout(start)
        self.at_login = QCheckBox("Start FarNode when I log in")
        self.minimized = QCheckBox("…straight to the tray")
        v.addWidget(self.at_login)
        v.addWidget(self.minimized)
        col.addWidget(start)

        # -- engine
        eng = QGroupBox("Engine")
        v = QVBoxLayout(eng)
        self.engine_status = QLabel("Checking the engine…")
        self.engine_status.setWordWrap(True)
        self.repair = QPushButton("Set up / repair the engine")
        self.repair.clicked.connect(self.repair_engine)
        self.engine_bar = QProgressBar()
        self.engine_bar.setRange(0, 100)
        self.engine_bar.hide()
        self.engine_step = QLabel("")
        self.engine_step.setWordWrap(True)
        self.engine_source = QLineEdit()
        self.engine_source.setPlaceholderText("empty: FarMesh from its Git source (needs the internet)")
        self.engine_source.setToolTip("Offline machines: a local source archive (.tar.gz, .zip) or wheel of the "
                                      "engine at the commit this version of FarNode pins. Used at the next set-up.")
        v.addWidget(self.engine_status)
        src_row = QHBoxLayout()
        src_row.addWidget(QLabel("Engine source:"))
        src_row.addWidget(self._field("engine.source", self.engine_source), 1)
        v.addLayout(src_row)
        row = QHBoxLayout()
        row.addWidget(self.repair)
        row.addWidget(self.engine_bar, 1)
        v.addLayout(row)
        v.addWidget(self.engine_step)
        col.addWidget(eng)
        col.addStretch(1)

        buttons = QHBoxLayout()
        self.saved_label = QLabel("")
        self.revert_button = QPushButton("Revert")
        self.revert_button.clicked.connect(self.load)
        self.save_button = QPushButton("Save")
        self.save_button.setDefault(True)
        self.save_button.clicked.connect(self.save)
        buttons.addWidget(self.saved_label, 1)
        buttons.addWidget(self._network_file_button())
        buttons.addWidget(self.revert_button)
        buttons.addWidget(self.save_button)
        outer.addLayout(buttons)
        bridge.progress.connect(self._on_progress)
        for form in body.findChildren(QFormLayout):  # narrow windows: a long label goes above its field
            form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.load()
        self._watch_edits()
        self.refresh_engine()

    def _field(self, key: str, field: QWidget) -> QWidget:
        """``field`` with the problem of setting ``key`` under it (red, hidden while there is none)."""
        box = QWidget()
        v = QVBoxLayout(box)
        v.setContentsMargins(0, 0, 0, 0)
        v.setSpacing(2)
        v.addWidget(field)
        problem = QLabel()
        problem.setWordWrap(True)
        problem.setStyleSheet(f"color: {PROBLEM_COLOUR};")
        problem.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        problem.hide()
        v.addWidget(problem)
        self.problem_labels[key] = problem
        return box

    def _watch_edits(self) -> None:
        """Every edit of a setting: "Saved." goes (there are unsaved edits) and the form is checked again."""
        for w in self.findChildren(QLineEdit):
            if w is not self.hf_token:  # the token has its own button and never goes to the settings file
                w.textChanged.connect(self._edited)
        for w in self.findChildren(QPlainTextEdit):
            w.textChanged.connect(self._edited)
        for w in self.findChildren(QSpinBox) + self.findChildren(QDoubleSpinBox):
            w.valueChanged.connect(self._edited)
            w.lineEdit().textEdited.connect(self._edited)  # typed text the box cannot take yet
        for w in self.findChildren(QComboBox):
            w.currentIndexChanged.connect(self._edited)
        for w in self.findChildren(QCheckBox):
            w.toggled.connect(self._edited)

    def _edited(self, *_args: object) -> None:
        if self._loading:
            return
        self.saved_label.setText("")
        self.show_problems(self.form_problems()[1])

    def form_problems(self) -> tuple[Settings, list[str]]:
        """The form's settings and what the settings' checks (the same as ``settings set``) say is wrong with
        them; with none, what would not take effect where it is made (a model on the local swarm)."""
        settings = self.form_settings()
        problems = self._parse_problems + settings.validate()
        if not problems:
            problems = ignored_changes(self.core.settings, settings)
        return settings, problems

    def show_problems(self, problems: list[str]) -> list[str]:
        """Each problem under its field; returns those that name no field of this page."""
        by_key: dict[str, list[str]] = {}
        other = []
        for message in problems:
            key = problem_key(message)
            if key in self.problem_labels:
                by_key.setdefault(key, []).append(message)
            else:
                other.append(message)
        for key, label in self.problem_labels.items():
            text = "\n".join(by_key.get(key, ()))
            label.setText(text)
            label.setVisible(bool(text))
        return other

    # ------------------------------------------------------------------ form <-> settings
    def load(self) -> None:
        self._loading = True
        try:
            self._load()
        finally:
            self._loading = False
        self.show_problems([])

    def _load(self) -> None:
        s = self.core.settings
        n, p = s.network, s.policies
        self.swarm.setCurrentIndex(max(0, [k for k, _ in SWARMS].index(n.swarm) if n.swarm in
                                       [k for k, _ in SWARMS] else 0))
        self.model.setText(n.model)
        self.peers.setPlainText("\n".join(n.initial_peers))
        self.port.setValue(n.port)
        self.public_name.setText(n.public_name)
        self.traffic.setValue(n.demo_traffic_per_minute)
        self.blocks.setValue(n.num_blocks)
        self.quant.setCurrentText(n.quantization)
        self.device.setCurrentText(n.device)
        self.dtype.setCurrentText(n.torch_dtype)
        self.host.setText(n.host)
        self.announce.setText(n.announce_address)
        self.nat.setChecked(n.nat_traversal)
        self.reserve.setValue(s.gpus.reserve_vram_mib)
        self.steam.setChecked(p.pause_for_steam_games)
        self.gpu_programs.setChecked(p.pause_for_gpu_programs)
        self.programs_on.setChecked(p.pause_for_programs)
        self.programs.setText(", ".join(p.programs))
        self.idle_only.setChecked(p.idle_only)
        self.idle_minutes.setValue(p.idle_minutes)
        self.temp_on.setChecked(p.temperature_pause)
        self.temp_high.setValue(p.temperature_high_c)
        self.temp_low.setValue(p.temperature_low_c)
        self.schedule_on.setChecked(p.schedule_enabled)
        self.schedule.setPlainText("\n".join(p.schedule))
        c = s.chain
        self.rpc.setText(c.rpc_url)
        self.chain_id.setText(str(c.chain_id) if c.chain_id else "")
        self.token.setText(c.token_address)
        self.senders.setText(", ".join(c.payout_senders))
        self.confirmations.setValue(c.confirmations)
        self.rate.setValue(c.reward_per_1k_tokens)
        self.at_login.setChecked(p.start_at_login)
        self.minimized.setChecked(p.start_minimized)
        self.engine_source.setText(s.engine.source)
        self._swarm_changed()
        self.saved_label.setText("")
        self.show_dtype()
        self.tasks.run(self.core.hf_token_present, self._token_state,
                       lambda exc, _tb: self.hf_token_status.setText(getattr(exc, "message", str(exc))))

    def _swarm_changed(self) -> None:
        key = self.swarm.currentData()
        self.peers.setEnabled(key == CUSTOM_SWARM)
        self.traffic.setEnabled(key == LOCAL_SWARM)
        self.model.setEnabled(key != LOCAL_SWARM)
        for w in (self.host, self.announce, self.nat, self.hf_token, self.hf_token_save, self.hf_token_remove):
            w.setEnabled(key != LOCAL_SWARM)

    def show_dtype(self) -> None:
        """The dtype every server of this node computes in (the same on all of them), and why."""
        plan = self.core.last_plan
        if plan is not None:
            self.dtype_effective.setText(f"Last start: {plan.dtype_reason}.")
        elif self.core.settings.network.torch_dtype == "auto":
            self.dtype_effective.setText("auto: the model's own dtype on a GPU (float16 where a GPU lacks "
                                         "bfloat16), float32 on the CPU; the same on every server.")
        else:
            self.dtype_effective.setText("")

    # ------------------------------------------------------------------ the Hugging Face token (keyring)
    def _token_state(self, has: bool) -> None:
        self.hf_token_status.setText("A token is in the keyring (for gated models such as Llama)." if has else
                                     "No token: gated models (every Llama) need one.")

    def save_hf_token(self) -> None:
        text = self.hf_token.text()
        self.hf_token.clear()
        self.tasks.run(lambda: self.core.save_hf_token(text), lambda _r: self._token_state(True))

    def remove_hf_token(self) -> None:
        self.tasks.run(self.core.remove_hf_token, lambda _r: self._token_state(False))

    def form_settings(self) -> Settings:
        s = self.core.settings
        net = replace(s.network, swarm=self.swarm.currentData(), model=self.model.text().strip(),
                      initial_peers=_lines(self.peers.toPlainText()), port=self.port.value(),
                      public_name=self.public_name.text().strip(), demo_traffic_per_minute=self.traffic.value(),
                      num_blocks=self.blocks.value(), quantization=self.quant.currentText(),
                      device=self.device.currentText(), torch_dtype=self.dtype.currentText(),
                      host=self.host.text().strip(), announce_address=self.announce.text().strip(),
                      nat_traversal=self.nat.isChecked())
        pol = replace(s.policies, pause_for_steam_games=self.steam.isChecked(),
                      pause_for_gpu_programs=self.gpu_programs.isChecked(),
                      pause_for_programs=self.programs_on.isChecked(),
                      programs=[x.strip() for x in self.programs.text().split(",") if x.strip()],
                      idle_only=self.idle_only.isChecked(), idle_minutes=self.idle_minutes.value(),
                      temperature_pause=self.temp_on.isChecked(), temperature_high_c=self.temp_high.value(),
                      temperature_low_c=self.temp_low.value(), schedule_enabled=self.schedule_on.isChecked(),
                      schedule=_lines(self.schedule.toPlainText()), start_at_login=self.at_login.isChecked(),
                      start_minimized=self.minimized.isChecked())
        self._parse_problems = []
        chain_id = 0
        if self.chain_id.text().strip():
            try:
                chain_id = parse_setting("chain.chain_id", [self.chain_id.text()])
            except SettingsError as exc:
                self._parse_problems.append(exc.message)
        chain = replace(s.chain, rpc_url=self.rpc.text().strip(), chain_id=chain_id,
                        token_address=self.token.text().strip(),
                        payout_senders=[x.strip() for x in self.senders.text().split(",") if x.strip()],
                        confirmations=self.confirmations.value(), reward_per_1k_tokens=self.rate.value())
        return replace(s, network=net, gpus=replace(s.gpus, reserve_vram_mib=self.reserve.value()), policies=pol,
                       chain=chain, engine=replace(s.engine, source=self.engine_source.text().strip()))

    def save(self) -> bool:
        """Save the form when the settings' checks find nothing wrong; otherwise each problem shows beside its
        field (the others beside the Save button) and nothing is written."""
        settings, problems = self.form_problems()
        other = self.show_problems(problems)
        if problems:
            n, beside = len(problems), len(problems) - len(other)
            where = f" ({'shown' if n == 1 else str(beside)} in red beside {'its field' if beside == 1 else 'their fields'})" \
                if beside else ""
            self.saved_label.setText(f"<span style='color:{PROBLEM_COLOUR}'>Not saved: {n} problem{'s' * (n != 1)}"
                                     f"{where}." + "".join(f"<br>{_html(m)}" for m in other) + "</span>")
            return False
        try:
            self.core.save_settings(settings)
        except Exception as exc:
            self.saved_label.setText(f"<span style='color:{PROBLEM_COLOUR}'>Not saved: see the message.</span>")
            show_error(self, exc)
            return False
        running = self.core.is_running()
        self.saved_label.setText("Saved." + (" Network changes apply when the node next starts." if running else ""))
        return True

    # ------------------------------------------------------------------ engine
    def refresh_engine(self) -> None:
        self.tasks.run(self.core.engine_status, self._engine_status,
                       lambda e, tb: self.engine_status.setText(f"Could not read the engine status: {e}"))

    def _engine_status(self, st: EngineStatus) -> None:
        if st.ready:
            previous = (" This is the previous engine: its update did not complete; Set up / repair tries "
                        "again." if st.previous else "")
            self.engine_status.setText(f"<span style='color:#27ae60'>Ready</span>: {engine_summary(st)}, "
                                       f"{st.variant} build, in {st.path}.{previous}")
        else:
            self.engine_status.setText(f"<span style='color:#e0a100'>Not set up</span>: the {st.variant} "
                                       f"engine will be installed in {st.path} ({ENGINE_SIZE.get(st.variant, 'several GB')}; "
                                       "minutes).")

    def repair_engine(self) -> None:
        self.repair.setEnabled(False)
        self.engine_bar.setValue(0)
        self.engine_bar.show()
        self.tasks.run(self.core.repair_engine,
                       self._repaired, self._repair_failed)

    def _on_progress(self, p: C.EngineProgress) -> None:
        self.engine_bar.show()
        self.engine_bar.setValue(int(p.percent))
        self.engine_step.setText(p.step)

    def _repaired(self, _probe: object) -> None:
        self.repair.setEnabled(True)
        self.engine_step.setText("The engine is ready.")
        self.refresh_engine()

    def _repair_failed(self, exc: BaseException, tb: str) -> None:
        self.repair.setEnabled(True)
        self.engine_step.setText("Set-up stopped: see the message.")
        show_error(self, exc, tb)
        self.refresh_engine()


    # ------------------------------------------------------------------ network file
    def _network_file_button(self) -> QPushButton:
        self.network_file_button = QPushButton("Load network file…")
        self.network_file_button.setToolTip("Join a FarMesh network from the file (or link) its operator publishes")
        self.network_file_button.clicked.connect(lambda: self.load_network_file())
        return self.network_file_button

    def load_network_file(self, source: str = "") -> None:
        """Check the file off the GUI thread (its model and payout chain), then save what it says."""
        if not source:
            from PySide6.QtWidgets import QFileDialog

            source, _ = QFileDialog.getOpenFileName(self, "Network file", "", "Network files (*.json);;All files (*)")
            if not source:
                return
        self.network_file_button.setEnabled(False)
        self.saved_label.setText("Checking the network file…")
        self.tasks.run(lambda: self.core.join_network(source), self._network_joined, self._network_failed)

    def _network_joined(self, desc: object) -> None:
        self.network_file_button.setEnabled(True)
        self.load()
        self.saved_label.setText(f"Joined the network {getattr(desc, 'name', '')!r}: saved (applies at the next start).")

    def _network_failed(self, exc: BaseException, tb: str) -> None:
        self.network_file_button.setEnabled(True)
        problems = getattr(exc, "problems", None)
        if problems is None:
            self.saved_label.setText("")
            show_error(self, exc, tb)
            return
        self.saved_label.setText("The network file cannot be used (nothing was changed):\n" + "\n".join(problems))


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def engine_summary(st: EngineStatus) -> str:
    """``FarMesh 2.3.0.dev2 (commit 75a473e), torch 2.13.0, transformers 4.43.1`` from an engine status."""
    p = st.probe
    if p is None:
        return "engine (not verified yet)"
    name = {"farmesh": "FarMesh"}.get(p.engine, p.engine)
    parts = [f"{name} {p.engine_version}" + (f" (commit {st.source_commit[:7]})" if st.source_commit
                                              else " (commit unknown)")]
    parts += [f"{label} {v}" for label, v in (("torch", p.torch_version), ("transformers", p.transformers_version))
              if v]
    return ", ".join(parts)
