"""Naming help from the product page: names by purpose, application and environment, and
the four things a good description says."""

from __future__ import annotations

from dataclasses import dataclass

from contracts import DEVELOPMENT, PRODUCTION, STAGING


@dataclass(frozen=True)
class NameGroup:
    title: str
    names: tuple[str, ...]


NAME_GROUPS = (
    NameGroup("By purpose", ("Production API", "Development Testing", "Production-LLM-API")),
    NameGroup("By application", ("Web App Integration", "Mobile App", "WebApp-Integration")),
    NameGroup("By environment", ("Staging Environment", "Live Production", "Testing-Environment")),
)

ENVIRONMENTS = (PRODUCTION, STAGING, DEVELOPMENT)

DESCRIPTION_TEMPLATE = (
    "Intended use: <how the key will be used>\n"
    "Application: <which application or service uses this key>\n"
    "Access level: <permissions or limits, e.g. rate limited to 1000 requests per hour>\n"
    "Contact: <who to contact if issues arise, e.g. dev-team@company.com>"
)

DESCRIPTION_EXAMPLE = (
    "Production API key for our main web application.\n"
    "Used by the customer support chatbot.\n"
    "Rate limited to 1000 requests per hour.\n"
    "Contact: dev-team@company.com"
)

EXPIRY_CHOICES = (
    ("", "Never"),
    ("7", "In 7 days"),
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("365", "In 1 year"),
)

UNUSED_AFTER_DAYS = 30


def all_names() -> list[str]:
    return [name for group in NAME_GROUPS for name in group.names]
