"""The SQL the audit reads readings with, a range or a window of heights at a time.

:data:`READING_SQL` gives one row per reading with ``row_ok``, which DuckDB computes in
C++; :data:`REFERENCE_READING_SQL` gives the same, faster for payloads in the reference
layout, which :func:`reference_layout` looks for in a sample; :data:`BLOCK_READINGS_SQL`
groups the rows per block in SQL. :mod:`gateway.audit_groups` reads them.
"""

from __future__ import annotations

import json

from gateway.audit_rows import PAYLOAD_FLOATS
from gateway.decode import KIND_FIELDS
from gateway.reader import StoreReader
from gateway.readings import ALWAYS_WRITTEN, KINDS, PAYLOAD_FIELDS, Kind

# row_ok, per reading, computed by DuckDB in C++: the envelope is exactly the canonical
# msgpack of [1, salt, topic, received_ns, payload] built from the stored columns and
# the payload it holds; the topic ends in /device_id/kind; and, for a JSON payload,
# every parsed column equals the payload's field (NULL for a field of the other kind).
# row_ok is NULL when SQL cannot tell (a msgpack or signed payload, a kind it does not
# know, a value no msgpack header can hold): Python checks those rows,
# and diagnoses the rows that fail. The leaf hash, SHA-256(0x00 || envelope), is
# checked by hashlib (cut_groups), which with SHA instructions beats DuckDB's
# sha256, and by DuckDB only in the grouped query for readings out of order. (An
# envelope an attacker replaced, leaf hash and all, cannot match the signed batch root,
# which the walk computes from the stored leaf hashes; so these checks only have to be
# exact for the payloads the gateway accepted.)
#
# The msgpack headers are built as bytes, not as hex text: an unsigned integer cast to
# BIT is its big-endian bytes (about 0.3 us less per row than printf and unhex).
_UINT_BYTES = (
    "CASE WHEN received_ns < 0 THEN NULL "
    "WHEN received_ns < 128 THEN received_ns::UTINYINT::BIT::BLOB "
    "WHEN received_ns < 256 THEN '\\xcc'::BLOB || received_ns::UTINYINT::BIT::BLOB "
    "WHEN received_ns < 65536 THEN '\\xcd'::BLOB || received_ns::USMALLINT::BIT::BLOB "
    "WHEN received_ns < 4294967296 THEN '\\xce'::BLOB || received_ns::UINTEGER::BIT::BLOB "
    "ELSE '\\xcf'::BLOB || received_ns::UBIGINT::BIT::BLOB END"
)
# The header of a topic under 32 bytes (msgpack fixstr, 0xa0 + length) is taken from a
# list of the 32 possible bytes: about 0.15 us less per row than casting the number.
_FIXSTR = "[" + ", ".join(f"'\\x{0xA0 + length:02x}'::BLOB" for length in range(32)) + "]"
_STR_HEADER = (
    f"CASE WHEN tl < 32 THEN {_FIXSTR}[tl + 1] "
    "WHEN tl < 256 THEN '\\xd9'::BLOB || tl::UTINYINT::BIT::BLOB "
    "WHEN tl < 65536 THEN '\\xda'::BLOB || tl::USMALLINT::BIT::BLOB END"
)


def _bin_header(length: str) -> str:
    """SQL: the msgpack bin header of a payload of ``length`` (SQL) bytes."""
    return (
        f"CASE WHEN {length} < 256 THEN '\\xc4'::BLOB || {length}::UTINYINT::BIT::BLOB "
        f"WHEN {length} < 65536 THEN '\\xc5'::BLOB || {length}::USMALLINT::BIT::BLOB "
        f"ELSE '\\xc6'::BLOB || {length}::UINTEGER::BIT::BLOB END"
    )


# One JSON parse per payload, with the fields of its kind only (json_transform costs
# about 0.15 us more per row with all ten): the gateway refuses a payload with a field
# its kind does not have (gateway.decode.KIND_FIELDS), so for any payload it anchored
# the columns of the other kind's fields must be NULL. A payload it did not anchor
# cannot match the signed batch root, however these checks judge it.
_JSON_TYPES = {
    "device_id": "VARCHAR",
    "seq": "BIGINT",
    "ts": "BIGINT",
    "asset_id": "VARCHAR",
    **dict.fromkeys(PAYLOAD_FLOATS, "DOUBLE"),
}
_COLUMN_OF = {"ts": "ts_ms"}  # payload field -> readings column, where the names differ


def _fields_ok(kind: str) -> str:
    """SQL: the JSON payload of a ``kind`` reading (``j_<kind>``) agrees with the columns."""
    j = f"j_{kind}"
    checks = [f"{j} IS NOT NULL"]
    for name in _JSON_TYPES:
        column = _COLUMN_OF.get(name, name)
        if name not in KIND_FIELDS[kind]:
            checks.append(f"{column} IS NULL")
        elif name == "device_id":  # may be left out: the topic names the device
            checks.append(f"coalesce({j}.device_id, device_id) = device_id")
        else:
            checks.append(f"{j}.{name} IS NOT DISTINCT FROM {column}")
    return " AND ".join(checks)


def _parse(kind: str, when: str) -> str:
    shape = json.dumps({n: t for n, t in _JSON_TYPES.items() if n in KIND_FIELDS[kind]})
    return (
        f"CASE WHEN kind = '{kind}'{when} THEN TRY(json_transform(decode(payload), '{shape}')) "
        f"END AS j_{kind}"
    )


# The reference layout: the fields in gateway.readings.PAYLOAD_FIELDS order, absent ones
# left out, as encode_payload writes them (compact JSON), which is what the simulators
# send. A payload in it is checked by rendering the columns in that layout and comparing
# bytes, instead of parsing it (about 0.25 us less per row, a quarter of the SQL).
# Equal bytes prove equal fields, for any payload the gateway anchored (valid JSON):
# a string column without '"' or '\' reads back as itself between quotes, DuckDB writes
# a BIGINT as its decimal digits and a DOUBLE as the shortest text that reads back as
# the same double (as Python's json does), a NULL column leaves its field out (concat
# skips NULL), and the other kind's columns must be NULL. Any other bytes fall back to
# the parse, so a payload in another layout is judged exactly the same, only slower.
def _reference(kind: Kind) -> str:
    """SQL: a ``kind`` reading's columns in the reference layout (BLOB), or NULL."""
    parts, guards = [], []
    for index, name in enumerate(PAYLOAD_FIELDS[kind]):
        column = _COLUMN_OF.get(name, name)
        key = f'{"," if index else "{"}"{name}":'
        if _JSON_TYPES[name] == "VARCHAR":
            guards.append(f"coalesce(strpos({column}, '\"') + strpos({column}, '\\'), 0) = 0")
            parts.append(f"'{key}\"' || {column} || '\"'")
        elif name in ALWAYS_WRITTEN[kind]:
            # Apart (0.04 us less per row than ||): if NULL, the bare key is no JSON.
            parts += [f"'{key}'", column]
        else:
            parts.append(f"'{key}' || {column}")
    others = (_COLUMN_OF.get(name, name) for name in _JSON_TYPES if name not in KIND_FIELDS[kind])
    guards += [f"{column} IS NULL" for column in others]
    return (
        f"WHEN '{kind}' THEN CASE WHEN {' AND '.join(guards)} "
        f"THEN encode(concat({', '.join(parts)}, '}}')) END"
    )


_RENDERED = f"CASE kind {' '.join(_reference(kind) for kind in KINDS)} END AS rendered"
_PREFIX = (
    f"'\\x95\\x01\\xc4\\x10'::BLOB || salt || {_STR_HEADER} || topic_b || {_UINT_BYTES} AS prefix"
)


def _prefixed(source: str, reference: bool) -> str:
    """The CTEs r and p: each reading of ``source`` with its envelope's expected prefix.

    And, with ``reference``, its payload rendered in the reference layout.
    """
    rendered = f", {_RENDERED}" if reference else ""
    return f"""r AS (
    SELECT *, encode(topic) AS topic_b, octet_length(encode(topic)) AS tl
    FROM {source}
), p AS (
    SELECT *, {_PREFIX}{rendered}
    FROM r
)"""


_RANGE = "readings WHERE block_height >= ? AND block_height < ?"
# The envelope is exactly the one its columns make with the payload rendered from them.
_AS_RENDERED = f"envelope = prefix || {_bin_header('octet_length(rendered)')} || rendered"


def _reading_sql(reference: bool) -> str:
    """:data:`READING_SQL`, or with ``reference`` :data:`REFERENCE_READING_SQL`."""

    def lazily(expression: str) -> str:
        # Only the rows whose rendered payload did not match need the parse.
        return f"CASE WHEN NOT fast THEN {expression} END" if reference else expression

    fast = (
        f""", f AS (
    SELECT *, coalesce({_AS_RENDERED}, false) AS fast
    FROM p
)"""
        if reference
        else ""
    )
    checked = f"""envelope = prefix || {_bin_header("pl")} || payload
    AND ends_with(topic, '/' || device_id || '/' || kind)
    AND CASE WHEN payload[1:1] = '{{'::BLOB THEN CASE kind
        {" ".join(f"WHEN '{kind}' THEN {_fields_ok(kind)}" for kind in KINDS)} END
        ELSE NULL END"""
    if reference:
        checked = f"ends_with(topic, '/' || device_id || '/' || kind) AND (fast OR ({checked}))"
    tag = lazily("envelope[octet_length(prefix) + 1:octet_length(prefix) + 1]")
    payload = lazily(
        "envelope[n + CASE tag WHEN '\\xc4'::BLOB THEN 3 WHEN '\\xc5'::BLOB THEN 4\n"
        "        WHEN '\\xc6'::BLOB THEN 6 ELSE 1 END:total]"
    )
    when = " AND NOT fast" if reference else ""
    return f"""
WITH {_prefixed(_RANGE, reference)}{fast}, q AS (
    SELECT *, octet_length(prefix) AS n, octet_length(envelope) AS total,
        {tag} AS tag
    FROM {"f" if reference else "p"}
), t AS (
    SELECT *, {payload} AS payload
    FROM q
), u AS (
    SELECT *, octet_length(payload) AS pl, {", ".join(_parse(kind, when) for kind in KINDS)}
    FROM t
)
SELECT block_height, leaf_index, envelope, leaf_hash,
    {checked}
    AS row_ok
FROM u
"""


READING_SQL = _reading_sql(reference=False)
# The same rows and row_ok, faster when most payloads are in the reference layout and
# slower (about 0.3 us per row) when they are not: chosen by :func:`reference_layout`.
REFERENCE_READING_SQL = _reading_sql(reference=True)
# The sample reference_layout judges by: up to this many readings of each of up to this
# many blocks, spread over the heights.
SAMPLE_READINGS = 100
SAMPLE_BLOCKS = 10


def reference_share(reader: StoreReader, heights: list[int]) -> tuple[int, int]:
    """Of the first :data:`SAMPLE_READINGS` readings of each block of ``heights``, how
    many are in the reference layout, and how many there are."""
    listed = ", ".join(str(int(height)) for height in heights) or "NULL"
    sample = (
        f"(SELECT * FROM readings WHERE block_height IN ({listed}) "
        f"AND leaf_index < {SAMPLE_READINGS})"
    )
    row = reader.one(
        f"WITH {_prefixed(sample, True)} SELECT count(*) FILTER (WHERE {_AS_RENDERED}), "
        "count(*) FROM p"
    )
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def reference_layout(reader: StoreReader) -> bool:
    """Whether most of the store's payloads seem to be in the reference layout.

    :data:`REFERENCE_READING_SQL` pays from about 57% of its rows in that layout on
    (0.65 us per row in it, 1.25 out of it, against 0.93 for every row with
    :data:`READING_SQL`); this asks for 60% of a sample of :data:`SAMPLE_BLOCKS` blocks
    from the first height to the last. Judged once for the whole store: the query is
    planned once per range, and a sample per range would cost as much again.
    """
    row = reader.one("SELECT min(height), max(height) FROM blocks")
    if row is None or row[0] is None:
        return False
    low, high = int(row[0]), int(row[1])
    steps = SAMPLE_BLOCKS - 1
    heights = sorted({low + (high - low) * step // steps for step in range(SAMPLE_BLOCKS)})
    matched, sampled = reference_share(reader, heights)
    return sampled > 0 and matched * 5 >= sampled * 3


# One row per block, in height order: how many readings, whether their leaf indexes are
# exactly 0..n-1, the leaf hashes in leaf order, and the indexes of the readings that
# failed a check or that SQL was unsure of.
BLOCK_READINGS_SQL = f"""
SELECT block_height, count(*) AS n,
    count(*) = count(DISTINCT leaf_index) AND min(leaf_index) = 0
        AND max(leaf_index) = count(*) - 1 AS in_order,
    list(leaf_hash ORDER BY leaf_index) AS leaves,
    list(leaf_index ORDER BY leaf_index) FILTER (
        WHERE (row_ok AND unhex(sha256('\\x00'::BLOB || envelope)) = leaf_hash) IS NOT TRUE
    ) AS unsure
FROM ({READING_SQL}) GROUP BY block_height ORDER BY block_height
"""
