"""Payouts: the wallet key in the OS keyring (keystore), the wallet, the EVM chain reader and the earnings computed from it."""
