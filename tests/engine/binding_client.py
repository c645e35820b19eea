"""Run in the engine environment by test_binding.py: three real hivemind DHTs on loopback (a bootstrap peer,
a server that announces its wallet binding, a client that reads it)."""

import sys
import time

sys.path.insert(0, sys.argv[1])

from farnode_desktop.engine.compat import import_engine  # noqa: E402

import_engine()  # the hivemind re-export bridge, as the launcher does

from farnode_desktop.engine.nat import disable_nat_traversal  # noqa: E402

disable_nat_traversal()  # loopback only, as the demo swarm's processes run

import hivemind  # noqa: E402

from farnode_desktop.engine.binding import BindingAnnouncer, read_bindings  # noqa: E402

a = hivemind.DHT(host_maddrs=["/ip4/127.0.0.1/tcp/0"], start=True)
peers = [str(m) for m in a.get_visible_maddrs()]
b = hivemind.DHT(host_maddrs=["/ip4/127.0.0.1/tcp/0"], initial_peers=peers, start=True)
c = hivemind.DHT(initial_peers=peers, client_mode=True, start=True)
res = []
ann = BindingAnnouncer(b, "pfx", "stmt", "0xsig", refresh_s=1.0, expiration_s=3.0,
                       on_result=lambda ok, e: res.append((ok, e)))
ann.start()
deadline = time.time() + 20
while not res and time.time() < deadline:
    time.sleep(0.1)
assert res and res[0][0], res
got = read_bindings(c, "pfx")
print("got", got, "server", str(b.peer_id), res)
assert got == {str(b.peer_id): ("stmt", "0xsig")}
time.sleep(3.5)  # past the first store's expiration: only the refreshes keep it
assert read_bindings(c, "pfx") == {str(b.peer_id): ("stmt", "0xsig")}
ann.stop()
ann.join(3)
time.sleep(4.5)  # no refresh: the last store expires
print("after stop", read_bindings(c, "pfx"))
assert read_bindings(c, "pfx") == {}
print("OK")
sys.stdout.flush()
for d in (c, b, a):
    d.shutdown()
