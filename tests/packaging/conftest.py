"""Fixtures the frozen-app tests share with other areas: a real anvil with the reward token deployed
(tests/chain) and a private Secret Service (tests/wallet)."""

from tests.chain.conftest import anvil, chain  # noqa: F401
from tests.wallet.conftest import secret_service  # noqa: F401
