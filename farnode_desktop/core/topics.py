"""The topics of the core's event bus (:class:`~farnode_desktop.core.events.EventBus`), defined once.

Publishers and subscribers (the core, the window's bridge, the headless face's JSON Lines) name a topic by its
constant here, never by a string of their own. Payloads are the immutable snapshots of
:mod:`farnode_desktop.core.snapshots` unless said otherwise.
"""

from __future__ import annotations

NODE_STATE = "node.state"  # NodeState, whenever a node's lifecycle state changes
NODE_STATS = "node.stats"  # NodeStats, once per second per running node (cumulative counters)
# The node as a whole, what the faces show: published by the node controller after each node.state / node.stats
# (its first server's state, PAUSED while a pause holds it stopped; the stats summed over every server).
NODE_OVERALL_STATE = "overall.state"  # NodeState
NODE_OVERALL_STATS = "overall.stats"  # NodeStats
NODE_EVENT = "node.event"  # NodeEvent: start, stop, crash, restart, hold, pause, resume, payout, ...
NODE_LOG = "node.log"  # str: a line of the server's log (the Logs page)
NODE_REACHABILITY = "node.reachability"  # (node id, the engine's Reachability answer)
REACHABILITY_STATUS = "node.reachability_status"  # {node id: ReachabilityStatus}, what the faces show
GPU_TELEMETRY = "gpu.telemetry"  # tuple[GpuTelemetry, ...], once per second, one entry per GPU
ENGINE_PROGRESS = "engine.progress"  # EngineProgress, while the engine environment is being set up
POLICY_DECISION = "policy.decision"  # the policies' Decision (core.policies.runner)
EARNINGS_UPDATE = "earnings.update"  # EarningsSnapshot (core.payout.earnings)
NETWORK_VIEW = "network.view"  # NetworkView (core.network.view)
NETWORK_ERROR = "network.error"  # str: why the network could not be read, and what to do

ALL = (NODE_STATE, NODE_STATS, NODE_OVERALL_STATE, NODE_OVERALL_STATS, NODE_EVENT, NODE_LOG, NODE_REACHABILITY,
       REACHABILITY_STATUS, GPU_TELEMETRY, ENGINE_PROGRESS, POLICY_DECISION, EARNINGS_UPDATE, NETWORK_VIEW, NETWORK_ERROR)
