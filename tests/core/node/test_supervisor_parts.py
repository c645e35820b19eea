"""Supervisor pieces that need no engine: failure messages, back-off."""

from __future__ import annotations

from farnode_desktop.core.node.supervisor import RestartPolicy, failure_message


def test_failure_messages_say_what_to_do(tmp_path):
    cfg = {"port": 31337, "model": "org/model"}
    log = tmp_path / "node.log"
    assert "Port 31337 is already used" in failure_message("port_in_use", cfg)
    assert "Settings > Network" in failure_message("bootstrap", cfg)
    assert "'org/model' could not be loaded (gated repo)" in failure_message("model", cfg, "gated repo")
    assert "fewer blocks" in failure_message("oom_at_load", cfg)
    assert "farnode-desktop engine setup" in failure_message("engine_missing", cfg, log_path=log)
    assert str(log) in failure_message("crash", cfg, "exit code 1", log)


def test_back_off_grows_then_stays():
    p = RestartPolicy(delays_s=(1.0, 5.0, 30.0))
    assert [p.delay(n) for n in (1, 2, 3, 4, 9)] == [1.0, 5.0, 30.0, 30.0, 30.0]
