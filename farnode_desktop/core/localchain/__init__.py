"""The local Ethereum node (anvil) that the embedded default runs beside the demo swarm."""
