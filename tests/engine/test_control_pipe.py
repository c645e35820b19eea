"""The engine side's control pipe (engine/channel.py ControlPipe): commands split across reads, a binding
before the stop, an overlong line dropped whole, the pipe's end taken as the app gone."""

from __future__ import annotations

import os
import threading

from farnode_desktop.engine import protocol as P
from farnode_desktop.engine.channel import ControlPipe


def _watch(r: int) -> tuple[ControlPipe, list[tuple[str, str]], list[str], threading.Thread]:
    pipe = ControlPipe(r)
    got: list[tuple[str, str]] = []
    why: list[str] = []
    pipe.on_command = lambda name, payload: got.append((name, payload))
    return pipe, got, why, pipe.start(why.append)


def test_commands_split_across_reads_then_stop():
    r, w = os.pipe()
    pipe, got, why, thread = _watch(r)
    line = P.binding_command("FarMesh node binding\nPeer ID: 12D3KooWx", "0x" + "ab" * 65)
    os.write(w, line[:10])
    os.write(w, line[10:] + b"unknown-command 1\nst")
    os.write(w, b"op\n")
    thread.join(5)
    assert why == ["the app asked to stop"]
    assert got[0][0] == P.BINDING_COMMAND
    assert P.parse_binding_command(got[0][1]) == ("FarMesh node binding\nPeer ID: 12D3KooWx", "0x" + "ab" * 65)
    assert got[1] == ("unknown-command", "1")
    os.close(w)
    os.close(r)


def test_an_overlong_line_is_dropped_and_the_end_of_the_pipe_stops():
    r, w = os.pipe()
    pipe, got, why, thread = _watch(r)
    writer = threading.Thread(target=lambda: (os.write(w, b"binding " + b"x" * (P.MAX_COMMAND_LINE + 10) + b"\n"),
                                              os.write(w, b"binding {}\n"), os.close(w)))
    writer.start()
    thread.join(5)
    writer.join(5)
    assert why == ["the app is gone (its control pipe closed)"]
    assert got == [("binding", "{}")]  # the overlong one never reached the handler
    os.close(r)


def test_stop_without_a_newline_before_the_end():
    r, w = os.pipe()
    pipe, got, why, thread = _watch(r)
    os.write(w, b"stop")
    thread.join(5)
    assert why == ["the app asked to stop"] and got == []
    os.close(w)
    os.close(r)
