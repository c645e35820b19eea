"""The wizard cannot finish with a configuration the node refuses: finished with each network choice, the
node's own start path short of the server (its set-up, ``prepare``, then the plan that a start makes and
``AppCore.last_plan`` shows) accepts the settings it left. The public network's model is chosen at start
from the live network (no internet here): its plan is made with a model given, checking everything else."""

from __future__ import annotations

import json

import pytest

from farnode_desktop.core.models.hub import HubClient
from farnode_desktop.core.node.plan import plan_for
from farnode_desktop.core.settings import CUSTOM_SWARM, LOCAL_SWARM, PUBLIC_SWARM
from tests.gui.conftest import engine_ready

PEER = "/ip4/127.0.0.1/tcp/31337/p2p/12D3KooWQ5vMGpGRtrFkaDrEWvMN9Vz3wUYBHozWctYfHZmVK7TX"
LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
         "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 1000,
         "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "torch_dtype": "float32"}


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "lab-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA))
    return folder


def _network_file(tmp_path, model: str):
    f = tmp_path / f"net-{bool(model)}.json"
    f.write_text(json.dumps({"farnode_network": 1, "name": "Lab swarm", "initial_peers": [PEER],
                             "dht_prefix": "lab-llama", "model": model}))
    return f


def _wizard(qtbot, core, tasks):
    from farnode_desktop.gui.bridge import BusBridge
    from farnode_desktop.gui.first_run import FirstRunWizard

    bridge = BusBridge(core.bus)
    wiz = FirstRunWizard(core, tasks, bridge)
    qtbot.addWidget(wiz)
    wiz.show()
    wiz.next()
    assert wiz.currentPage() is wiz.network_step
    return wiz, tasks, bridge


def _finish(qtbot, wiz) -> None:
    qtbot.waitUntil(lambda: wiz.currentPage() is wiz.wallet_step, timeout=30_000)
    wiz.next()  # skip the wallet
    wiz.next()  # skip the engine
    assert wiz.currentPage() is wiz.finish_step
    wiz.finish_step.start.setChecked(False)
    with qtbot.waitSignal(wiz.finished_setup, timeout=5000):
        wiz.accept()


@pytest.mark.parametrize("choice", [LOCAL_SWARM, PUBLIC_SWARM, CUSTOM_SWARM])
def test_every_network_choice_finishes_with_settings_the_node_accepts(qtbot, core, tasks, tmp_path, model_folder, choice):
    if choice != PUBLIC_SWARM and not engine_ready(core.paths):
        pytest.skip("the shared engine (FARNODE_ENGINE_ROOT) is not set up: the node's set-up would install it")
    wiz, _tasks, bridge = _wizard(qtbot, core, tasks)
    step = wiz.network_step
    {LOCAL_SWARM: step.local, PUBLIC_SWARM: step.public, CUSTOM_SWARM: step.custom}[choice].setChecked(True)
    if choice == CUSTOM_SWARM:
        step.source.setText(str(_network_file(tmp_path, str(model_folder))))
    wiz.next()
    _finish(qtbot, wiz)
    bridge.close()
    tasks.wait()
    qtbot.waitUntil(lambda: tasks.pending == 0, timeout=10_000)  # results delivered before the wizard goes
    settings = core.settings
    assert settings.network.swarm == choice and json.loads(core.paths.settings_file.read_text())[
        "network"]["swarm"] == choice
    assert settings.validate() == []
    if choice == PUBLIC_SWARM:
        assert not settings.network.model  # the node chooses it at start, from the network
        plan = plan_for(settings, core.paths, nvml=core.node.nvml, model=HubClient().model_config(str(model_folder)))
    else:
        core.node.prepare()  # the start's set-up: the engine, the demo model (local) or the model's config
        core.node.server_specs()  # the start's plan: what a start refuses is refused here
        plan = core.last_plan
    assert plan is not None and plan.servers
    assert plan.network == choice
    if choice == CUSTOM_SWARM:
        assert plan.model == str(model_folder) and list(plan.initial_peers) == [PEER]


def test_a_network_file_without_a_model_is_refused_by_the_wizard(qtbot, core, tasks, tmp_path):
    """The node cannot start on a joined network that names no model (it chooses one only on the public
    network): the wizard says so in red and joins nothing."""
    wiz, _tasks, bridge = _wizard(qtbot, core, tasks)
    step = wiz.network_step
    step.custom.setChecked(True)
    step.source.setText(str(_network_file(tmp_path, "")))
    wiz.next()
    qtbot.waitUntil(lambda: "names no model" in step.problem.text(), timeout=20_000)
    assert wiz.currentPage() is step and step.joined is None
    assert not core.paths.settings_file.exists()
    assert core.settings.network.swarm != CUSTOM_SWARM
    wiz.reject()
    bridge.close()
    tasks.wait()
    qtbot.waitUntil(lambda: tasks.pending == 0, timeout=10_000)  # results delivered before the wizard goes


def test_skip_on_the_network_step_keeps_the_network(qtbot, core, tasks, tmp_path):
    """Skip leaves the network as it is, even with 'join a network file' chosen and nothing (or a file not
    yet joined) given: the wizard moves on and finishes with the network it had."""
    from PySide6.QtWidgets import QWizard

    wiz, _tasks, bridge = _wizard(qtbot, core, tasks)
    step = wiz.network_step
    step.custom.setChecked(True)
    step.source.setText(str(_network_file(tmp_path, "")))
    wiz.button(QWizard.WizardButton.CustomButton1).click()  # Skip
    assert wiz.currentPage() is wiz.wallet_step and step.local.isChecked() and step.joined is None
    _finish(qtbot, wiz)
    assert core.settings.network.swarm == LOCAL_SWARM
    bridge.close()
    tasks.wait()
    qtbot.waitUntil(lambda: tasks.pending == 0, timeout=10_000)  # results delivered before the wizard goes
