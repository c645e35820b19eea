"""``python -m farnode_desktop.demo_operator``: the demo payout service (see the package's docstring).

stdin: the first line is the config as JSON::

    {"rpc_url": str, "chain_id": int, "token_address": str, "ledger_path": str, "state_dir": str,
     "rate_per_1k_tokens": float, "batch_interval_s": float (default 180), "confirmations": int (default 1),
     "quick_payments": int (default 0), "later_interval_s": float or null (default null)}

After ``quick_payments`` payments the batches come every ``later_interval_s`` seconds (null: always
``batch_interval_s``).

the second line the operator's private key (hex); never on the command line or in the environment. stdin stays
open: its end (the app closed), SIGINT or SIGTERM stop the service within a few seconds; a batch in flight is
left written down, resolved at the next start. Logs go to stderr, one line per decision. Exit status: 0 after a
stop, 2 for a config, key or progress file it cannot use (the message says what to do).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from farnode_desktop.core.errors import FarNodeError
from farnode_desktop.core.payout.keys import check_key_text
from farnode_desktop.demo_operator.service import Config

log = logging.getLogger("farnode.demo_operator")

_REQUIRED = {"rpc_url": str, "chain_id": int, "token_address": str, "ledger_path": str, "state_dir": str,
             "rate_per_1k_tokens": (int, float)}
_OPTIONAL = {"batch_interval_s": ((int, float), 180.0), "confirmations": (int, 1), "quick_payments": (int, 0),
             "later_interval_s": ((int, float, type(None)), None)}


class ConfigError(FarNodeError):
    title = "Payout service config problem"


def parse_config(line: bytes) -> Config:
    """The config from stdin's first line; :class:`ConfigError` names every problem at once."""
    try:
        raw = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"The first line of stdin must be the config as one JSON object ({e}).") from None
    if not isinstance(raw, dict):
        raise ConfigError("The first line of stdin must be the config as one JSON object.")
    problems = []
    for name, kind in _REQUIRED.items():
        if name not in raw:
            problems.append(f"{name} is missing")
        elif not isinstance(raw[name], kind) or isinstance(raw[name], bool):
            problems.append(f"{name} has the wrong type ({type(raw[name]).__name__})")
    for name, (kind, default) in _OPTIONAL.items():
        raw.setdefault(name, default)
        if not isinstance(raw[name], kind) or isinstance(raw[name], bool):
            problems.append(f"{name} has the wrong type ({type(raw[name]).__name__})")
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        problems.append("unknown key(s): " + ", ".join(unknown))
    if not problems:
        if not raw["rpc_url"].startswith(("http://", "https://")):
            problems.append("rpc_url must be an http:// or https:// URL")
        if raw["chain_id"] <= 0:
            problems.append("chain_id must be positive")
        if not (raw["rate_per_1k_tokens"] >= 0):
            problems.append("rate_per_1k_tokens must be 0 or more")
        if not (raw["batch_interval_s"] > 0):
            problems.append("batch_interval_s must be more than 0")
        if raw["confirmations"] < 1:
            problems.append("confirmations must be 1 or more")
        if raw["quick_payments"] < 0:
            problems.append("quick_payments must be 0 or more")
        if raw["later_interval_s"] is not None and not (raw["later_interval_s"] > 0):
            problems.append("later_interval_s must be more than 0 (or null)")
        if not raw["ledger_path"] or not raw["state_dir"]:
            problems.append("ledger_path and state_dir must name files and folders")
    if problems:
        raise ConfigError("The payout service's config cannot be used: " + "; ".join(problems) + ".")
    return Config(rpc_url=raw["rpc_url"], chain_id=raw["chain_id"], token_address=raw["token_address"],
                  ledger_path=Path(raw["ledger_path"]), state_dir=Path(raw["state_dir"]),
                  rate_per_1k_tokens=float(raw["rate_per_1k_tokens"]),
                  batch_interval_s=float(raw["batch_interval_s"]), confirmations=raw["confirmations"],
                  quick_payments=raw["quick_payments"],
                  later_interval_s=None if raw["later_interval_s"] is None else float(raw["later_interval_s"]))


def _watch_stdin(fd: int, stop: threading.Event) -> None:
    """Set ``stop`` at the end of stdin (the app closed it, or went away). Reads the descriptor itself: a
    thread blocked in the buffered reader would hold its lock when the interpreter exits (and abort it)."""
    try:
        while os.read(fd, 4096):
            pass
    except (OSError, ValueError):
        pass
    if not stop.is_set():
        log.info("stdin closed: stopping")
    stop.set()


def main() -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stdin = sys.stdin.buffer
    try:
        config = parse_config(stdin.readline())
        key_line = stdin.readline().decode("utf-8", "replace").strip()
        if not key_line:
            raise ConfigError("The second line of stdin must be the operator's private key (hex); it is empty.")
        key = "0x" + check_key_text(key_line)
        del key_line
        from farnode_desktop.demo_operator.chain import OperatorChain
        from farnode_desktop.demo_operator.progress import Progress
        from farnode_desktop.demo_operator.service import PayoutService

        try:
            chain = OperatorChain(config.rpc_url, config.chain_id, config.token_address, key)
        except Exception as e:  # web3 checks the token address; eth-account the key (its message holds no key)
            what = "token address" if "address" in str(e).lower() else "operator key"
            raise ConfigError(f"The {what} cannot be used ({type(e).__name__}).") from None
        finally:
            del key
        config.state_dir.mkdir(parents=True, exist_ok=True)
        progress = Progress(config.state_dir / "payouts.sqlite3")
    except FarNodeError as e:
        log.error("%s: %s", e.title, e.message)
        return 2
    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    threading.Thread(target=_watch_stdin, args=(stdin.fileno(), stop), name="stdin-watch", daemon=True).start()
    service = PayoutService(config, chain, progress, stop)
    try:
        service.run()
    finally:
        service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
