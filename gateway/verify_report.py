"""What a verified bundle proves, in words a person can check, and as JSON for scripts.

:func:`summarize` turns a ledger :class:`~ledger.VerificationReport` into a plain
mapping: the verdict (and the first failed check), the gateway and head the readings
are anchored to, per device the kinds, assets, time span, count and the gaps in
``seq`` among the disclosed readings, and one row per reading. :func:`render` prints
that mapping with rich; ``anchorgate verify --json`` prints it as JSON.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from gateway.decode import parse_payload, topic_pattern
from gateway.errors import DecodeError
from gateway.readings import DEFAULT_TOPIC_TEMPLATE
from ledger import (
    Envelope,
    FormatError,
    PublicKey,
    SignatureError,
    VerificationReport,
    VerifiedReading,
)
from ledger.device_sig import SignedReading, is_signed_reading
from ledger.keys import key_id_of

_TOPIC = topic_pattern(DEFAULT_TOPIC_TEMPLATE)
_VALUE_FIELDS = ("celsius", "lat", "lon", "alt_m", "speed_mps", "accuracy_m")


def iso_ns(ns: int) -> str:
    """A receive time (Unix ns) as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def iso_ms(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1e3, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"


def device_signature(
    envelope: Envelope, device_keys: Mapping[str, PublicKey] | None
) -> dict[str, Any] | None:
    """Who signed the reading and whether it verifies; None for an unsigned reading.

    ``status`` is ``verified``, ``failed`` (a wrong signature, a key that is not the
    device's, a malformed signed reading, another device's topic) or ``unchecked`` (no
    public key for the device was given).
    """
    payload = envelope.payload
    if not is_signed_reading(payload):
        return None
    try:
        signed = SignedReading.from_bytes(payload)
    except FormatError as exc:
        return {"device_id": None, "key_id": None, "status": "failed", "detail": str(exc)}
    result: dict[str, Any] = {"device_id": signed.device_id, "key_id": signed.key_id.hex()}
    match = _TOPIC.fullmatch(envelope.topic)
    key = None if device_keys is None else device_keys.get(signed.device_id)
    if match is not None and match["device_id"] != signed.device_id:
        result |= {
            "status": "failed",
            "detail": f"signed for device {signed.device_id!r}, anchored on the topic of "
            f"{match['device_id']!r}",
        }
    elif key is None:
        given = "no device keys given (--device-keys)" if device_keys is None else "no key"
        result |= {"status": "unchecked", "detail": f"{given} for device {signed.device_id!r}"}
    else:
        try:
            signed.verify(envelope.topic, key)
        except SignatureError as exc:
            result |= {"status": "failed", "detail": str(exc)}
        else:
            result |= {"status": "verified", "detail": "the signature verifies"}
    return result


def reading_row(
    item: VerifiedReading, device_keys: Mapping[str, PublicKey] | None = None
) -> dict[str, Any]:
    """One disclosed reading as a flat mapping (payload fields, where it is anchored)."""
    envelope = item.envelope
    match = _TOPIC.fullmatch(envelope.topic)
    row: dict[str, Any] = {
        "id": f"{item.block.height}:{item.leaf_index}",
        "block_height": item.block.height,
        "leaf_index": item.leaf_index,
        "topic": envelope.topic,
        "received_ns": envelope.received_ns,
        "received": iso_ns(envelope.received_ns),
        "device_id": match["device_id"] if match else None,
        "kind": match["kind"] if match else None,
        "device_signature": device_signature(envelope, device_keys),
    }
    try:
        fields, fmt = parse_payload(envelope.payload)
    except DecodeError as exc:
        row["payload_error"] = str(exc)
        row["payload_hex"] = envelope.payload.hex()
        return row
    row["payload_format"] = fmt
    for name, value in fields.items():
        if name == "device_id" and row["device_id"] is not None:
            continue
        row[name] = value
    return row


def _gaps(seqs: list[int]) -> list[list[int]]:
    """Missing [first, last] ranges between the smallest and largest seq."""
    ordered = sorted(set(seqs))
    return [[a + 1, b - 1] for a, b in itertools.pairwise(ordered) if b - a > 1]


def _device_gaps(by_kind: dict[str, list[int]]) -> dict[str, list[list[int]]]:
    """Gaps per kind, or over all kinds when the device counts one seq for all of them."""
    every = [seq for values in by_kind.values() for seq in values]
    if len(by_kind) > 1 and len(every) == len(set(every)):
        return {"all kinds": _gaps(every)}
    return {kind: _gaps(values) for kind, values in by_kind.items()}


def summarize(
    report: VerificationReport, device_keys: Mapping[str, PublicKey] | None = None
) -> dict[str, Any]:
    """The report as a JSON-ready mapping (the shape of ``verify --json``).

    With ``device_keys`` (device id to public key), each signed reading's device
    signature is checked too; ``device_signatures`` counts the outcomes.
    """
    failure = report.failure
    summary: dict[str, Any] = {
        "valid": report.valid,
        "failure": None
        if failure is None
        else {"check": failure.name, "subject": failure.subject, "detail": failure.detail},
        "checks": [
            {"check": c.name, "ok": c.ok, "subject": c.subject, "detail": c.detail}
            for c in report.checks
        ],
    }
    if report.head is not None and report.head_hash is not None:
        summary["gateway_id"] = report.head.gateway_id
        summary["key_id"] = report.head.key_id.hex()
        summary["head"] = {
            "height": report.head.height,
            "hash": report.head_hash.hex(),
            "created": iso_ns(report.head.created_ns),
        }
    if report.extends is not None:
        summary["extends"] = report.extends.hex()
    if report.rotations:
        summary["rotations"] = [
            {
                "height": header.height,
                "old_key_id": header.key_id.hex(),
                "new_key_id": key_id_of(header.new_key or b"").hex(),
            }
            for header in report.rotations
        ]
    rows = [reading_row(item, device_keys) for item in report.readings]
    summary["readings"] = rows
    outcomes = [row["device_signature"] for row in rows]
    summary["device_signatures"] = {
        "unsigned": sum(1 for o in outcomes if o is None),
        **{
            status: sum(1 for o in outcomes if o is not None and o["status"] == status)
            for status in ("verified", "failed", "unchecked")
        },
    }
    summary["count"] = len(rows)
    devices: dict[str, dict[str, Any]] = {}
    seqs: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row in rows:
        device = str(row.get("device_id"))
        info = devices.setdefault(
            device,
            {"count": 0, "kinds": set(), "assets": set(), "first": None, "last": None},
        )
        info["count"] += 1
        if row.get("kind"):
            info["kinds"].add(row["kind"])
        if isinstance(row.get("asset_id"), str):
            info["assets"].add(row["asset_id"])
        received = row["received_ns"]
        info["first"] = received if info["first"] is None else min(info["first"], received)
        info["last"] = received if info["last"] is None else max(info["last"], received)
        if type(row.get("seq")) is int:
            seqs[(device, str(row.get("kind")))].append(row["seq"])
    summary["devices"] = {
        device: {
            "count": info["count"],
            "kinds": sorted(info["kinds"]),
            "assets": sorted(info["assets"]),
            "first_received": iso_ns(info["first"]),
            "last_received": iso_ns(info["last"]),
            "seq_gaps": _device_gaps({k: v for (d, k), v in seqs.items() if d == device}),
        }
        for device, info in sorted(devices.items())
    }
    if rows:
        summary["first_received"] = iso_ns(min(r["received_ns"] for r in rows))
        summary["last_received"] = iso_ns(max(r["received_ns"] for r in rows))
    return summary


def _value(row: dict[str, Any]) -> str:
    if "payload_error" in row:
        return f"(not a reading: {row['payload_error']})"
    parts = [f"{name}={row[name]}" for name in _VALUE_FIELDS if name in row]
    return " ".join(parts)


def render(summary: dict[str, Any], console: Console) -> None:
    """Print the summary for a person: the verdict first, then what was proven."""
    if summary["valid"]:
        console.print("[bold green]VALID[/]: every check passed.")
    else:
        failure = summary["failure"]
        console.print(f"[bold red]INVALID[/]: check '{failure['check']}' failed")
        console.print(f"  concerning: {failure['subject']}")
        console.print(f"  reason: {failure['detail']}")
        return
    head = summary["head"]
    console.print(
        f"{summary['count']} reading(s) from gateway {summary['gateway_id']!r} "
        f"(key {summary['key_id'][:16]}), anchored to head block {head['height']} "
        f"{head['hash']} created {head['created']}."
    )
    if "extends" in summary:
        console.print(f"That head extends the older head {summary['extends']}.")
    for rotation in summary.get("rotations", []):
        console.print(
            f"Key rotation at block {rotation['height']}: key {rotation['old_key_id'][:16]} "
            f"handed the chain to key {rotation['new_key_id'][:16]}."
        )
    console.print(f"Received between {summary['first_received']} and {summary['last_received']}.")
    for device, info in summary["devices"].items():
        assets = ", ".join(info["assets"]) or "no asset"
        console.print(
            f"- device {device} ({', '.join(info['kinds'])}; {assets}): {info['count']} "
            f"reading(s), {info['first_received']} .. {info['last_received']}"
        )
        for kind, gaps in info["seq_gaps"].items():
            if gaps:
                text = ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in gaps)
                console.print(f"    {kind}: seq not among the disclosed readings: {text}")
            else:
                console.print(f"    {kind}: seq without gaps")
    counts = summary["device_signatures"]
    gateway = summary["gateway_id"]
    console.print(
        f"Origin: {counts['verified']} signed by their device (signature verified), "
        f"{counts['unchecked']} signed but not checked, {counts['failed']} with a device "
        f"signature that FAILS, {counts['unsigned']} unsigned (received by gateway "
        f"{gateway!r} only)."
    )
    table = Table(title="Proven readings")
    for column in ("id", "device", "kind", "seq", "sensor time", "received", "values", "origin"):
        table.add_column(column, overflow="fold")
    for row in summary["readings"]:
        table.add_row(
            row["id"],
            str(row.get("device_id")),
            str(row.get("kind")),
            str(row.get("seq", "")),
            iso_ms(row["ts"]) if type(row.get("ts")) is int else "",
            row["received"],
            _value(row),
            origin(row, gateway),
        )
    console.print(table)
    for row in summary["readings"]:
        signature = row["device_signature"]
        if signature is not None and signature["status"] == "failed":
            console.print(
                f"[bold red]device signature FAILS[/] for {row['id']}: {signature['detail']}"
            )


def origin(row: dict[str, Any], gateway_id: str) -> str:
    """ "signed by device X (key id ...): verified", or "received by gateway G"."""
    signature = row.get("device_signature")
    if signature is None:
        return f"received by gateway {gateway_id}"
    if signature["device_id"] is None:
        return "malformed device signature: FAILS"
    verdict = {"verified": "verified", "failed": "FAILS", "unchecked": "not checked"}
    return (
        f"signed by device {signature['device_id']} (key id {signature['key_id'][:16]}): "
        f"{verdict[signature['status']]}"
    )
