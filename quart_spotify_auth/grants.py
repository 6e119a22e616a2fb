"""How tokens are renewed: a user's with the refresh token, the app's with client credentials."""

from __future__ import annotations

from .accounts import AccountsClient
from .errors import LoginRequired
from .tokens import TokenRecord

__all__ = ["APP_KEY", "Grant", "grant_for"]

#: The store key of the app-only (client credentials) token.
APP_KEY = "app:client-credentials"


class Grant:
    """Users' tokens: renewed with their refresh token, while they have one."""

    def renewable(self, record: TokenRecord) -> bool:
        return record.refresh_token is not None

    async def renew(
        self, accounts: AccountsClient, current: TokenRecord | None, max_wait: float | None
    ) -> TokenRecord:
        if current is None:
            raise LoginRequired()
        return await accounts.refresh(current, max_wait=max_wait)


class _AppGrant(Grant):
    """The app's own token: a new one from the client-credentials grant, stored or not."""

    def renewable(self, record: TokenRecord) -> bool:
        return True

    async def renew(
        self, accounts: AccountsClient, current: TokenRecord | None, max_wait: float | None
    ) -> TokenRecord:
        return await accounts.client_credentials(max_wait=max_wait)


_USER, _APP = Grant(), _AppGrant()


def grant_for(key: str) -> Grant:
    """The grant that renews ``key``'s tokens."""
    return _APP if key == APP_KEY else _USER
