"""A stand-in for the app's process in tests: starts a node on the local swarm through the core, reports the
node's process groups on stdout once it is online, then waits to be killed."""

import json
import sys
import time

from farnode_desktop.core import snapshots as C
from farnode_desktop.core.events import EventBus
from farnode_desktop.core.node.controller import NodeController
from farnode_desktop.core.paths import AppPaths
from farnode_desktop.core.settings import Settings

settings = Settings()
settings.network.port = int(sys.argv[1])
settings.network.demo_traffic_per_minute = 60
node = NodeController(AppPaths.default().ensure(), EventBus(), settings=settings)
node.start()
if node.supervisor.wait_for({C.ONLINE, C.FAILED, C.HELD}, 120).state != C.ONLINE:
    print(json.dumps({"error": node.state.message}), flush=True)
    sys.exit(1)
node.traffic.wait_for(lambda s: s.requests >= 1, 60)
print(json.dumps({"launcher": node.supervisor.pid, "traffic": node.traffic._proc.pid,
                  "node_id": node.supervisor.node_id}), flush=True)
while True:
    time.sleep(1)
