"""Coverage-guided fuzzing of every decoder a stranger can reach, with atheris (libFuzzer).

Run it as a script, for a bounded time::

    .venv/bin/python tests/security/fuzz_atheris.py --seconds 60 [--target NAME]

Targets: ``envelope``, ``header``, ``chain-head``, ``signed-reading``, ``payload``
(the reading decoder, topic and payload from the input) and ``bundle`` (verify_bundle
on the input bytes); ``all`` (the default) feeds each input to every one. The corpus
starts from the test vectors. An exception other than the package's own error type,
or a verify_bundle that raises at all, is a crash: libFuzzer prints the input and the
exit code is not 0.
libFuzzer's last lines say how many inputs were tried ("Done N runs in S second(s)").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris  # type: ignore[import-untyped]

with atheris.instrument_imports():
    from gateway.config import LimitsSection
    from gateway.decode import Decoder
    from gateway.errors import DecodeError
    from ledger.chain import ChainHead
    from ledger.device_sig import SignedReading
    from ledger.envelope import Envelope
    from ledger.errors import LedgerError
    from ledger.header import BlockHeader
    from ledger.keys import PublicKey
    from ledger.verify import verify_bundle

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "anchorgate"
_BUNDLE = json.loads((VECTORS / "bundle.json").read_text())
_KEY = PublicKey.from_pem(_BUNDLE["public_key_pem"].encode())
_DECODER = Decoder(LimitsSection())
_NOW_NS = 1_764_000_000_000_000_000


def _ledger(decode: Callable[[bytes], object]) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        with contextlib.suppress(LedgerError):
            decode(data)

    return run


def _payload(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    topic = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 300))
    with contextlib.suppress(DecodeError):
        _DECODER.decode(topic, fdp.ConsumeBytes(fdp.remaining_bytes()), _NOW_NS)


def _bundle(data: bytes) -> None:
    verify_bundle(data, _KEY, None)  # must never raise


TARGETS: dict[str, Callable[[bytes], None]] = {
    "envelope": _ledger(Envelope.from_bytes),
    "header": _ledger(BlockHeader.from_bytes),
    "chain-head": _ledger(ChainHead.from_bytes),
    "signed-reading": _ledger(SignedReading.from_bytes),
    "payload": _payload,
    "bundle": _bundle,
}


def _seeds(corpus: Path) -> None:
    chain = json.loads((VECTORS / "chain.json").read_text())
    envelopes = json.loads((VECTORS / "envelopes.json").read_text())
    seeds = [bytes.fromhex(c["envelope"]) for c in envelopes["cases"]]
    seeds += [bytes.fromhex(c["payload"]) for c in envelopes["cases"]]
    seeds += [bytes.fromhex(b["header"]) for b in chain["blocks"]]
    seeds += [bytes.fromhex(b["head_after"]) for b in chain["blocks"]]
    seeds.append(_BUNDLE["bundle_json"].encode())
    rotation = json.loads((VECTORS / "rotation.json").read_text())
    seeds += [bytes.fromhex(b["header"]) for b in rotation["blocks"]]
    seeds += [b["bundle_json"].encode() for b in rotation["bundles"]]
    signed = json.loads((VECTORS / "device_signatures.json").read_text())
    seeds += [bytes.fromhex(c["signed_reading"]) for c in signed["valid"]]
    for i, seed in enumerate(seeds):
        (corpus / f"seed-{i}").write_bytes(seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz")
    parser.add_argument("--target", choices=["all", *TARGETS], default="all")
    parser.add_argument("--runs", type=int, default=-1, help="stop after this many inputs")
    args, rest = parser.parse_known_args()
    targets = list(TARGETS.values()) if args.target == "all" else [TARGETS[args.target]]

    def one_input(data: bytes) -> None:
        for target in targets:
            target(data)

    with tempfile.TemporaryDirectory(prefix="anchorgate-fuzz-") as corpus:
        _seeds(Path(corpus))
        argv = [
            sys.argv[0],
            *rest,
            f"-max_total_time={args.seconds}",
            f"-runs={args.runs}",
            "-max_len=8192",
            "-rss_limit_mb=1024",
            "-timeout=10",
            corpus,
        ]
        atheris.Setup(argv, one_input)
        atheris.Fuzz()


if __name__ == "__main__":
    main()
