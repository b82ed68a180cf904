"""``anchorgate rotate-key`` on a real DuckDB store: continue, export, verify, audit, refuse.

The store is written by the gateway's own anchorer (auditor_store.make_store); the
rotation, the blocks after it, the bundle and the audit all go through the library
and CLI the operator and the auditor use. The auditor only ever holds the ORIGINAL
public key.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from auditor_store import GATEWAY_ID, T0_NS, Made, make_store, readings_for

from gateway.anchor import Accepted, Anchorer, block_row
from gateway.audit_parallel import audit_file
from gateway.chain_check import check_recent_blocks
from gateway.cli import main
from gateway.config import LimitsSection
from gateway.config_load import load_config
from gateway.decode import Decoder, detect_format
from gateway.errors import StoreMismatchError
from gateway.proofs import export_bundle
from gateway.reader import ReadingRef, Selection, StoreReader
from gateway.readings import encode_reading, topic_for
from gateway.rotation import RotationError, rotate_key, update_key_file
from gateway.store import Store
from ledger import ChainBuilder, ChainHead, SigningKey, verify_bundle


def write_config(directory: Path, made: Made, key: SigningKey) -> Path:
    key_file = directory / "keys" / "gateway.key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key.save(key_file)
    path = directory / "gateway.toml"
    path.write_text(
        f'# the gateway\n[gateway]\nid = "{GATEWAY_ID}"  # ours\nkey_file = "{key_file}"  # signs\n'
        f'\n[store]\npath = "{made.path}"\nverify_blocks_on_start = 3\n[api]\nenabled = false\n'
    )
    return path


def commit_batch(store: Store, key: SigningKey, batch: int) -> int:
    """One more batch of seven readings, anchored by ``key``; returns its height."""
    clock = itertools.count(T0_NS + 10**12 + batch * 10**9, 1000)
    anchorer = Anchorer(
        store, key, GATEWAY_ID, duplicate_window_ns=10**12, clock=lambda: next(clock)
    )
    decoder = Decoder(LimitsSection())
    items = []
    for n, reading in enumerate(readings_for(batch)):
        payload = encode_reading(reading, "json")
        topic = topic_for(reading.device_id, reading.kind)
        received = T0_NS + batch * 10**9 + n * 1000
        decoded = decoder.decode(topic, payload, received)
        items.append(Accepted(topic, payload, received, decoded, detect_format(payload)))
    outcome = anchorer.commit(items)
    assert outcome.height is not None
    return outcome.height


@pytest.fixture
def made(tmp_path: Path) -> Made:
    return make_store(tmp_path / "store", batches=5)


def test_rotate_continue_export_verify_with_the_original_key_and_audit(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = write_config(tmp_path, made, made.key)
    result = rotate_key(load_config(config_path), config_path)
    assert result.height == 5
    assert result.old_key_id == made.key.key_id
    assert result.config_updated, result.config_note
    config = load_config(config_path)
    assert config.gateway.key_file == result.new_key_file
    assert result.new_key_file.stat().st_mode & 0o777 == 0o600
    text = config_path.read_text()
    assert "# ours" in text
    assert "# signs" in text  # one line edited, comments kept
    new_key = SigningKey.load(result.new_key_file)
    assert new_key.key_id == result.new_key_id

    with Store.open(made.path) as store:
        # The gateway starts with the new key; the old one is refused, naming the rotation.
        assert check_recent_blocks(store, new_key, GATEWAY_ID, 100) == 6
        with pytest.raises(StoreMismatchError, match="rotation at block 5 revoked"):
            check_recent_blocks(store, made.key, GATEWAY_ID, 3)
        after = [commit_batch(store, new_key, batch) for batch in (5, 6)]
        assert after == [6, 7]
        assert check_recent_blocks(store, new_key, GATEWAY_ID, 2) == 2
    with StoreReader.open(made.path) as reader:
        exported = export_bundle(
            reader, Selection(reading_ids=(ReadingRef(7, 3), ReadingRef(1, 0)))
        )
    bundle = exported.bundle
    assert bundle["format"] == "anchorgate-proof/2"
    assert [r["height"] for r in bundle["rotations"]] == [5]
    assert bundle["key_id"] == made.key.key_id.hex()
    report = verify_bundle(json.dumps(bundle), made.key.public_key)
    assert report.valid, report.failure
    assert report.head is not None
    assert report.head.key_id == new_key.key_id
    # The auditor's command, with only the original public key.
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    assert main(["verify", str(path), "--key", str(made.public_key_path)]) == 0
    out = capsys.readouterr().out
    assert "VALID" in out
    assert f"Key rotation at block 5: key {made.key.key_id.hex()[:16]}" in out
    for workers in (1, 2):
        audit = audit_file(made.path, made.key.public_key, workers=workers, min_span=2)
        assert audit.ok, audit.problems
        assert audit.blocks == 8


def test_a_block_signed_by_the_revoked_key_is_found_by_the_audit(
    made: Made, tmp_path: Path
) -> None:
    config_path = write_config(tmp_path, made, made.key)
    result = rotate_key(load_config(config_path), config_path)
    with Store.open(made.path) as store:
        head = ChainHead.from_bytes(store.chain_head() or b"")
        stale = ChainBuilder(GATEWAY_ID, made.key, head).rotate(SigningKey.generate(), T0_NS * 2)
        store.commit_batch([], block_row(stale), [])
        with pytest.raises(StoreMismatchError, match="revoked-key"):
            check_recent_blocks(store, SigningKey.load(result.new_key_file), GATEWAY_ID, 3)
    audit = audit_file(made.path, made.key.public_key)
    reasons = [p.reason for p in audit.problems]
    assert any(r.startswith("revoked-key") for r in reasons), reasons


def test_rotate_key_refuses_what_it_should(made: Made, tmp_path: Path) -> None:
    config_path = write_config(tmp_path, made, made.key)
    config = load_config(config_path)
    taken = tmp_path / "taken.key"
    taken.write_text("not a key")
    with pytest.raises(RotationError, match="already exists"):
        rotate_key(config, config_path, taken)
    assert taken.read_text() == "not a key"

    # A key that is not the chain's: the store says which key it expects.
    stranger_dir = tmp_path / "stranger"
    stranger_config = write_config(stranger_dir, made, SigningKey.generate())
    with pytest.raises(StoreMismatchError, match="current key"):
        rotate_key(load_config(stranger_config), stranger_config, stranger_dir / "new.key")
    assert not (stranger_dir / "new.key").exists()

    # After a rotation, the old key is refused as revoked.
    rotate_key(config, config_path, tmp_path / "second.key", update_config=False)
    with pytest.raises(StoreMismatchError, match="revoked"):
        rotate_key(config, config_path, tmp_path / "third.key")
    assert not (tmp_path / "third.key").exists()

    # A store held by another process (a running gateway).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, duckdb; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "time.sleep(60)",
            str(made.path),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"held"
        moved = load_config(config_path)
        with pytest.raises(RotationError, match="stop the gateway first"):
            rotate_key(moved, config_path, tmp_path / "fourth.key")
        assert not (tmp_path / "fourth.key").exists()
    finally:
        holder.kill()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()


def test_the_command_line(made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_path = write_config(tmp_path, made, made.key)
    new_key = tmp_path / "keys" / "next.key"
    assert main(["rotate-key", "-c", str(config_path), "--new-key", str(new_key)]) == 0
    out = capsys.readouterr().out
    assert "rotated at block 5" in out
    assert f"now names {new_key}" in out
    assert load_config(config_path).gateway.key_file == new_key
    assert main(["rotate-key", "-c", str(config_path), "--new-key", str(new_key)]) == 2
    assert "already exists" in capsys.readouterr().err
    original = tmp_path / "keys" / "gateway.key"
    text = config_path.read_text().replace(str(new_key), str(original))
    config_path.write_text(text)
    assert main(["rotate-key", "-c", str(config_path), "--keep-config"]) == 2
    err = capsys.readouterr().err
    assert "revoked" in err
    assert "Traceback" not in err


def test_config_edit_falls_back_to_an_instruction(tmp_path: Path) -> None:
    odd = tmp_path / "odd.toml"
    odd.write_text('gateway = { id = "gw", key_file = "a.key" }\n')
    updated, note = update_key_file(odd, Path("keys/b.key"))
    assert not updated
    assert 'set key_file = "keys/b.key"' in note
    assert odd.read_text() == 'gateway = { id = "gw", key_file = "a.key" }\n'
    plain = tmp_path / "plain.toml"
    plain.write_text('[gateway]\nid = "gw"\n\n[store]\npath = "x.duckdb"\n')
    updated, _ = update_key_file(plain, Path("keys/b.key"))
    assert updated
    assert load_config(plain).gateway.key_file == Path("keys/b.key")


def test_a_damaged_rotation_block_is_one_problem(made: Made, tmp_path: Path) -> None:
    config_path = write_config(tmp_path, made, made.key)
    result = rotate_key(load_config(config_path), config_path)
    with Store.open(made.path) as store:
        new_key = SigningKey.load(result.new_key_file)
        commit_batch(store, new_key, 5)
        store.query("UPDATE blocks SET signature = ? WHERE height = 5", [bytes(64)])
    audit = audit_file(made.path, made.key.public_key)
    assert [(p.block, p.reason.split(":")[0]) for p in audit.problems] == [(5, "signature")]
