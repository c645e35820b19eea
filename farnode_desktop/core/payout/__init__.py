"""Payouts: the wallet (its key in the OS keyring, through core.keystore), the EVM chain reader and the earnings computed from it."""
