#!/usr/bin/env python3
"""Writes seed inputs for the fuzz targets: the decoders' from valid frames (daemon/PROTOCOL.md)
and the Cyton packet format (daemon/src/protocol/cyton.rs), plus a few damaged ones; upload bodies
(the seed's `.ecgzip` JSON, plain and gzip, valid and damaged); WFDB headers (LUDB's and
PTB-XL's from ../shared/data when present, and inline ones); bundle manifests (the shipped demo
bundle's manifest, alone and as a one-file zip).

    python3 gen_seeds.py            # writes corpus/<target>/ for every target
    python3 gen_seeds.py OUT_DIR    # writes OUT_DIR/<target>/

Every seed starts with the chunking byte the targets read (see fuzz_targets/common.rs):
0x00..0x7F = fixed chunks of (k & 0x3F) + 1 bytes; 0x80 | (n - 1) followed by n control bytes =
chunk sizes cycling through them (each % 65).
"""

import glob
import gzip
import io
import json
import os
import struct
import sys
import zipfile

# ---------------------------------------------------------------- eknet frame v1

SYNC = b"\xec\x4b"


def crc16_ccitt_false(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


assert crc16_ccitt_false(b"123456789") == 0x29B1  # the catalogue's check value


def frame(kind: int, payload: bytes, version: int = 1, bad_crc: bool = False) -> bytes:
    body = bytes([version, kind]) + struct.pack("<H", len(payload)) + payload
    crc = crc16_ccitt_false(body) ^ (0x0101 if bad_crc else 0)
    return SYNC + body + struct.pack("<H", crc)


def i24_le(v: int) -> bytes:
    return (v & 0xFFFFFF).to_bytes(3, "little")


def samples(first: int, s: int, c: int, lead_off: int = 0, base: int = 0) -> bytes:
    vals = b"".join(
        i24_le(max(-(1 << 23), min((1 << 23) - 1, base + 1000 * i - 7 * j)))
        for i in range(s)
        for j in range(c)
    )
    return frame(0x01, struct.pack("<IHBB", first & 0xFFFFFFFF, lead_off, s, c) + vals)


def extremes(first: int, c: int) -> bytes:
    vals = [(1 << 23) - 1, -(1 << 23), 0, -1] * (c // 4)
    return frame(0x01, struct.pack("<IHBB", first, 0x1FF, 1, c) + b"".join(map(i24_le, vals)))


def hello(rate_mhz=500000, uv=0.047684, c=8, dev=b"eknet-sim") -> bytes:
    return frame(0x02, struct.pack("<IfBB", rate_mhz, uv, c, len(dev)) + dev)


def eknet_seeds() -> dict:
    h = hello()
    run = b"".join(samples(10 * k, 10, 8) for k in range(4))
    return {
        "hello_then_samples": b"\x00" + h + run,
        "samples_64byte_chunks": b"\x3f" + run,
        "samples_varying_chunks": b"\x83\x05\x00\x21\x40" + h + run,
        "gap_and_reset": b"\x07"
        + samples(0, 10, 8)
        + samples(25, 10, 8)
        + samples(3, 10, 8)
        + samples(0xFFFFFFFA, 10, 8)
        + samples(4, 10, 8),
        "twelve_channels_max": b"\x10"
        + hello(c=12, dev=b"ads1298-12")
        + samples(0, 28, 12)  # 8 + 3*28*12 = 1016 <= 1024
        + samples(28, 1, 12),
        "forty_samples": b"\x20" + samples(0, 40, 8),
        "extremes": b"\x02" + extremes(0, 8) + extremes(1, 12),
        "garbage_between": b"\x8f"
        + bytes(range(1, 17))
        + b"\xec\x00\xec\xec"  # lone and repeated first sync bytes
        + samples(0, 2, 8)
        + b"\xec"
        + samples(2, 2, 8)
        + b"\xff" * 9
        + h,
        "bad_crc_then_good": b"\x05" + samples(0, 5, 8)[:-2] + b"\x00\x00" + samples(5, 5, 8),
        "flipped_crc": b"\x01" + frame(0x01, samples(0, 1, 8)[6:-2], bad_crc=True) + samples(1, 1, 8),
        "length_over_bound": b"\x09" + SYNC + b"\x01\x01\xff\xff" + samples(0, 3, 8),
        "unknown_type_and_version": b"\x0b"
        + frame(0x7F, b"abc")
        + frame(0x01, samples(0, 1, 8)[6:-2], version=2)
        + samples(0, 1, 8),
        "bad_payloads": b"\x3f"
        + frame(0x01, struct.pack("<IHBB", 0, 0, 2, 8) + b"\x00" * 3)  # N != 8 + 3*S*C
        + frame(0x01, struct.pack("<IHBB", 0, 0, 1, 9) + b"\x00" * 27)  # C = 9
        + frame(0x01, struct.pack("<IHBB", 0, 0, 0, 8))  # S = 0
        + hello(uv=float("nan"))
        + hello(uv=-1.0)
        + frame(0x02, struct.pack("<IfBB", 500000, 1.0, 8, 2) + b"\xff\xfe")  # not UTF-8
        + hello(c=8, dev=b"x" * 64),
        "truncated_tail": b"\x04" + h + samples(0, 10, 8)[:100],
        "sync_at_end": b"\x00" + samples(0, 1, 8) + b"\xec",
    }


# ---------------------------------------------------------------- OpenBCI Cyton

def cyton(counter: int, base: int = 0, footer: int = 0xC0, aux: bytes = b"\x00" * 6) -> bytes:
    chans = b"".join(
        (max(-(1 << 23), min((1 << 23) - 1, base + 1111 * c)) & 0xFFFFFF).to_bytes(3, "big")
        for c in range(8)
    )
    return bytes([0xA0, counter & 0xFF]) + chans + aux + bytes([footer])


def cyton_extremes(counter: int) -> bytes:
    vals = [(1 << 23) - 1, -(1 << 23), 0, -1] * 2
    chans = b"".join((v & 0xFFFFFF).to_bytes(3, "big") for v in vals)
    return bytes([0xA0, counter]) + chans + b"\x01\x02\x03\x04\x05\x06" + b"\xc1"


def cyton_seeds() -> dict:
    run = b"".join(cyton(k, base=k * 10) for k in range(6))
    return {
        "packets_1byte_chunks": b"\x00" + run,
        "packets_64byte_chunks": b"\x3f" + run,
        "packets_varying_chunks": b"\x82\x07\x20\x41" + run,
        "gap_and_wrap": b"\x0a"
        + cyton(250)
        + cyton(255)
        + cyton(0)
        + cyton(3)
        + cyton(2),  # wraps: 2 after 3 is 255 lost
        "footers": b"\x21" + b"".join(cyton(k, footer=0xC0 + k) for k in range(16)),
        "extremes": b"\x05" + cyton_extremes(0) + cyton_extremes(1),
        "bad_footer_resync": b"\x06"
        + cyton(0)[:-1]
        + b"\x00"  # bad footer
        + cyton(1)
        + cyton(2, footer=0xD0),
        "header_bytes_inside": b"\x8f"
        + b"\xa0" * 40
        + cyton(7, base=-5)
        + bytes(range(0xA0, 0xD0))
        + cyton(8),
        "garbage_first": b"\x03" + bytes(range(0, 0xA0, 3)) + cyton(0) + cyton(1),
        "truncated_tail": b"\x0c" + cyton(0) + cyton(1)[:20],
    }


HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.join(HERE, "..", "..")
LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def upload_seeds() -> dict:
    """First byte: 0 plain body, 1 gzip body as sent, 2 the target gzips the rest itself."""
    def body(n=40, rate=500.0, meta=True, bare=False):
        d = {}
        for k, lead in enumerate(LEADS):
            vals = [round(0.01 * ((i * (k + 3)) % 37) - 0.1, 3) for i in range(n)]
            d[lead] = vals if bare else {"value": vals}
        if meta:
            d["eknet_meta"] = {"sample_rate_hz": rate, "id": "fuzz", "age": 60, "sex": "F"}
        return json.dumps(d, separators=(",", ":")).encode()
    ok = body()
    return {
        "plain": b"\x00" + ok,
        "gzip": b"\x01" + gzip.compress(ok),
        "wrap": b"\x02" + ok,
        "bare_lists_no_meta": b"\x00" + body(meta=False, bare=True),
        "rate_250": b"\x00" + body(rate=250.0),
        "rate_huge": b"\x00" + body(rate=1e12),
        "rate_nan": b"\x00" + ok.replace(b'"sample_rate_hz":500.0', b'"sample_rate_hz":"nan"'),
        "one_lead_short": b"\x00" + ok.replace(b'"V6":{"value":[', b'"V6":{"value":[1,', 1),
        "truncated_gzip": b"\x01" + gzip.compress(ok)[:-9],
        "not_json": b"\x00" + b"{\"I\": [1, 2,",
    }


def header_seeds() -> dict:
    seeds = {
        "inline": b"rec 2 500 10\nrec.dat 16 1000(0)/mV 16 0 -12 1234 0 I\nrec.dat 16 1000/mV 16 0 5 99 0 II\n# Age: 61\n# Sex: M\n",
        "inline_212": b"x 1 360 20\nx.dat 212 200 11 1024 0 0 0 MLII\n",
        "bad_counts": b"r 99999999 500 99999999999\n",
    }
    data = os.environ.get("EKNET_DATA_DIR", os.path.join(REPO, "..", "shared", "data"))
    for pattern, n in (("ludb/data/*.hea", 4), ("ptbxl/**/*.hea", 3), ("cinc*/**/*.hea", 3)):
        for path in sorted(glob.glob(os.path.join(data, pattern), recursive=True))[:n]:
            with open(path, "rb") as f:
                seeds["data_" + os.path.basename(path)] = f.read()
    return seeds


def bundle_seeds() -> dict:
    path = os.path.join(REPO, "models", "eknet-demo.eknet")
    if not os.path.exists(path):
        return {}
    with zipfile.ZipFile(path) as z:
        manifest = z.read("manifest.json")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("manifest.json", manifest)
        z.writestr("model.onnx", b"not an onnx graph")
    return {"manifest": manifest, "zip_manifest_only": buf.getvalue()}


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    for target, seeds in (
        ("eknet_decoder", eknet_seeds()),
        ("cyton_decoder", cyton_seeds()),
        ("upload_body", upload_seeds()),
        ("wfdb_header", header_seeds()),
        ("bundle", bundle_seeds()),
    ):
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, "seed-" + name), "wb") as f:
                f.write(data)
        print(f"{d}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
