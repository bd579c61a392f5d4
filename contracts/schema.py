"""JSON Schemas of the messages on each topic, for readers that are not written in Python.

``python -m contracts.schema OUT_DIR`` writes ``OUT_DIR/<topic>.schema.json`` per topic.
The schemas describe what a reader accepts (validation mode), which is the contract.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import TypeAdapter

from contracts.alerts import Alert
from contracts.commands import Command
from contracts.events import Event
from contracts.limits import LimitState
from contracts.results import CommandResult
from contracts.topics import (
    KEYS_COMMAND_RESULTS,
    KEYS_COMMANDS,
    KEYS_EVENTS,
    USAGE_ALERTS,
    USAGE_LIMITS,
    USAGE_RECORDS,
)
from contracts.usage import UsageRecord

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

_MESSAGE_TYPES: Final[dict[str, tuple[str, Any]]] = {
    KEYS_EVENTS: ("KeyEvent", Event),
    KEYS_COMMANDS: ("KeyCommand", Command),
    KEYS_COMMAND_RESULTS: ("CommandResult", CommandResult),
    USAGE_RECORDS: ("UsageRecord", UsageRecord),
    USAGE_ALERTS: ("Alert", Alert),
    USAGE_LIMITS: ("LimitState", LimitState),
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """One JSON Schema per topic, keyed by the topic name."""
    schemas: dict[str, dict[str, Any]] = {}
    for topic, (title, message_type) in _MESSAGE_TYPES.items():
        schema = TypeAdapter(message_type).json_schema(mode="validation", by_alias=True)
        schemas[topic] = {
            "$schema": JSON_SCHEMA_DIALECT,
            "title": title,
            "description": f"A message on the Kafka topic {topic!r} (JSON, UTF-8).",
            **{key: value for key, value in schema.items() if key not in ("title", "description")},
        }
    return schemas


def write_schemas(out_dir: Path) -> list[Path]:
    """Write every schema to ``out_dir`` (created if missing); returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for topic, schema in json_schemas().items():
        path = out_dir / f"{topic}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m contracts.schema", description="Write the JSON Schema of each topic."
    )
    parser.add_argument("out_dir", type=Path, help="directory for <topic>.schema.json files")
    args = parser.parse_args(argv)
    for path in write_schemas(args.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
