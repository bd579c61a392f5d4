"""An account's webhooks: created (after the URL is checked, as it resolves now), listed,
enabled again after they were disabled (the URL checked again), deleted. The signing
secret is made here and answered once; it is never logged."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from services.usage.adapters import webhook_sender, webhook_store
from services.usage.app.webhook_delivery import DeliveryPolicy
from services.usage.domain.webhooks import SEVERITY_RANK, new_secret


class TooManyWebhooks(Exception):
    """The account has as many webhooks as it may have."""


@dataclass
class WebhookRegistry:
    pool: Callable[[], Any]
    policy: DeliveryPolicy
    max_per_account: int = 20

    async def create(
        self, account_id: str, url: str, kinds: Sequence[str], min_severity: str
    ) -> tuple[dict[str, Any], str]:
        """The new webhook and its secret; UnsafeDestination for a URL that may not be
        used, TooManyWebhooks when the account is at its limit."""
        await webhook_sender.checked_destination(
            url, self.policy.allow_http, self.policy.allow_private, timeout=3.0
        )
        secret = new_secret()
        created = await webhook_store.create(
            self.pool(), uuid.uuid4(), account_id, url, sorted(set(kinds)), min_severity,
            SEVERITY_RANK[min_severity], secret, self.max_per_account,
        )  # fmt: skip
        if created is None:
            raise TooManyWebhooks(f"An account has at most {self.max_per_account} webhooks.")
        return created, secret

    async def enable(self, account_id: str, webhook_id: uuid.UUID) -> dict[str, Any] | None:
        """The webhook, sent to again; None when the account has no such one, and
        UnsafeDestination when its URL may no longer be used (it resolves elsewhere now)."""
        found = await webhook_store.get(self.pool(), account_id, webhook_id)
        if found is None:
            return None
        if found["disabled_at"] is not None:
            await webhook_sender.checked_destination(
                found["url"], self.policy.allow_http, self.policy.allow_private, timeout=3.0
            )
        return await webhook_store.enable(self.pool(), account_id, webhook_id)
