"""Commands from `keys.commands`: each applied once, whatever the redeliveries.

The result is stored with the command in the transaction that appends its events, so a
redelivered command (same `command_id`) gets the stored result and produces no events.
A rejected command is stored too: repeating it yields the same rejection.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from contracts import (
    Command,
    CommandError,
    CommandResult,
    CreateKey,
    DisableKey,
    EnableKey,
    ReportLeakedKey,
    RevokeKey,
    RotateKey,
    UpdateKey,
)
from services.keys.app import use_cases
from services.keys.app.unit_of_work import KeysTransaction, KeysUnitOfWork
from services.keys.domain.errors import CommandIdReused, DomainError, VersionConflict
from services.keys.domain.leaks import DEFAULT_LEAK_POLICY, LeakPolicy
from services.keys.domain.recorded import Meta


async def _dispatch(  # noqa: PLR0911 - one branch per command type
    tx: KeysTransaction,
    tools: use_cases.SecretTools,
    command: Command,
    meta: Meta,
    policy: LeakPolicy = DEFAULT_LEAK_POLICY,
) -> use_cases.Outcome:
    account = command.account_id
    if isinstance(command, CreateKey):
        return await use_cases.create(tx, tools, account, command.data, meta, key_id=command.key_id)
    key_id = command.key_id
    if key_id is None:
        raise AssertionError("the contract requires key_id for every type but CreateKey")
    if isinstance(command, UpdateKey):
        return await use_cases.update(tx, account, key_id, command.data, meta)
    if isinstance(command, DisableKey):
        return await use_cases.disable(tx, account, key_id, command.data.reason, meta)
    if isinstance(command, EnableKey):
        return await use_cases.enable(tx, account, key_id, command.data.reason, meta)
    if isinstance(command, RotateKey):
        rotation = command.data
        return await use_cases.rotate(
            tx,
            tools,
            account,
            key_id,
            rotation.grace_period_seconds,
            meta,
            rotation.end_grace_when_quiet_seconds,
        )
    if isinstance(command, RevokeKey):
        return await use_cases.revoke(tx, account, key_id, command.data.reason, meta)
    if isinstance(command, ReportLeakedKey):
        data = command.data
        return await use_cases.report_leaked(
            tx, account, key_id, data.source, data.url, policy, meta
        )
    raise AssertionError(f"unhandled command type {command.command_type}")


def _rejected(command: Command, error: DomainError) -> CommandResult:
    return CommandResult(
        command_id=command.command_id,
        status="rejected",
        key_id=command.key_id,
        error=CommandError(code=error.code, message=error.message[:2000]),
        **_who_tried_what(command),
    )


def _accepted(command: Command, outcome: use_cases.Outcome) -> CommandResult:
    return outcome.accepted(
        command.command_id,
        with_prefix=isinstance(command, (CreateKey, RotateKey)),
        **_who_tried_what(command),
    )


def _who_tried_what(command: Command) -> dict[str, Any]:
    """The command's context on its result: the audit trail of a rejection needs it."""
    return {
        "account_id": command.account_id,
        "command_type": command.command_type,
        "actor": command.actor,
        "correlation_id": command.correlation_id,
    }


def _answer(command: Command, stored: CommandResult) -> CommandResult:
    """A stored result answers a redelivery of its own command. A command that reuses the
    id of another (another account's, another type's) is refused, never told what the
    other one did; the refusal is not stored, the id being taken."""
    if stored.account_id in (None, command.account_id) and stored.command_type in (
        None,
        command.command_type,
    ):
        return stored
    return _rejected(
        command,
        CommandIdReused("This command_id was used for another command; give each its own."),
    )


async def execute(
    uow: KeysUnitOfWork,
    tools: use_cases.SecretTools,
    command: Command,
    meta: Meta,
    policy: LeakPolicy = DEFAULT_LEAK_POLICY,
) -> CommandResult:
    """Apply `command` once; returns its (possibly stored) result. `policy` decides what
    a ReportLeakedKey does (the setting KEYS_LEAK_POLICY)."""

    async def attempt(tx: KeysTransaction) -> CommandResult:
        stored = await tx.command_result(command.command_id)
        if stored is not None:
            return _answer(command, stored)
        result = _accepted(command, await _dispatch(tx, tools, command, meta, policy))
        await tx.save_command_result(
            command.command_id, command.account_id, command.command_type, result
        )
        return result

    try:
        return await use_cases.in_transaction(uow, attempt)
    except VersionConflict:
        raise  # still conflicting after every retry: let the consumer retry the batch
    except DomainError as error:
        result = _rejected(command, error)

    async def store_rejection(tx: KeysTransaction) -> CommandResult:
        stored = await tx.command_result(command.command_id)
        if stored is not None:
            return _answer(command, stored)
        await tx.save_command_result(
            command.command_id, command.account_id, command.command_type, result
        )
        return result

    return await use_cases.in_transaction(uow, store_rejection)


class _Undecided(Exception):
    """A command of a batch failed after it had appended: the batch is rolled back and
    its commands are applied one at a time instead."""


async def execute_batch(
    uow: KeysUnitOfWork,
    tools: use_cases.SecretTools,
    commands: Sequence[tuple[Command, Meta]],
    policy: LeakPolicy = DEFAULT_LEAK_POLICY,
) -> list[CommandResult]:
    """Apply `commands` (in order; those on one key in their order) in one transaction:
    one commit, one read of the stored results and the keys' states, one write of the new
    results, and one statement per append. The rules are those of `execute`: a
    command applied before gets its stored result, a refused one is stored as rejected.
    Whatever the one transaction cannot decide alone (a key changed meanwhile by another
    process, a command stored concurrently, a database error) rolls it back, and the
    commands are then applied one at a time by `execute`, each with its retries.
    A batch of one command too: one read and one write, where `execute` reads its stored
    result and its key's state one after the other (at a low rate most batches are one
    command, and each round trip is paid in its latency)."""
    try:
        async with uow.transaction() as tx:
            # The keys of commands found stored are read too (a redelivery is rare, the
            # read harmless): what the stored results and the states need is one query.
            stored = await tx.command_results_and_preload(
                [c.command_id for c, _ in commands],
                [c.key_id for c, _ in commands if c.key_id is not None],
            )
            results: list[CommandResult] = []
            new: list[tuple[str, str, CommandResult]] = []
            seen: dict[uuid.UUID, CommandResult] = {}
            for command, meta in commands:
                earlier = stored.get(command.command_id) or seen.get(command.command_id)
                if earlier is not None:
                    results.append(_answer(command, earlier))
                    continue
                result = await _decide(tx, tools, command, meta, policy)
                seen[command.command_id] = result
                new.append((command.account_id, command.command_type, result))
                results.append(result)
            if new:
                await tx.save_command_results(new)
        return results
    except (VersionConflict, _Undecided, asyncpg.PostgresError):
        return [await execute(uow, tools, c, m, policy) for c, m in commands]


async def _decide(
    tx: KeysTransaction,
    tools: use_cases.SecretTools,
    command: Command,
    meta: Meta,
    policy: LeakPolicy,
) -> CommandResult:
    """One command of a batch: accepted, or rejected by the rules before it wrote."""
    appended = len(tx.recorded)
    try:
        outcome = await _dispatch(tx, tools, command, meta, policy)
    except VersionConflict:
        raise
    except DomainError as error:
        if len(tx.recorded) != appended:
            raise _Undecided from error
        return _rejected(command, error)
    return _accepted(command, outcome)
