"""The demo payout service: a separate process standing in for a FarMesh network's operator on the local demo
swarm (``python -m farnode_desktop.demo_operator``).

Every ``batch_interval_s`` it reads the served ledger (``core/payout/served.py``) past the last row it paid
for, and pays each server its tokens times the network's rate in the reward token, by ERC-20 transfer from the
operator's account, to the wallet that server announced with a valid signed binding of its peer id. Its
progress is kept in ``state_dir/payouts.sqlite3`` so that nothing is paid twice or lost when the service, the
app or the chain restart; ``state_dir/operator.json`` tells the app where it stands. The config and the
operator's key come on stdin (see ``__main__``), never on the command line or in the environment.

This package is the only one that imports web3, and nothing else in the app imports it (tests/test_layers.py):
the window's process never loads web3.
"""
