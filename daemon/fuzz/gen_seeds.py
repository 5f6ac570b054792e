#!/usr/bin/env python3
"""Writes seed inputs for the fuzz targets, built from valid frames (daemon/PROTOCOL.md) and the
Cyton packet format (daemon/src/protocol/cyton.rs), plus a few damaged ones.

    python3 gen_seeds.py            # writes corpus/eknet_decoder/ and corpus/cyton_decoder/
    python3 gen_seeds.py OUT_DIR    # writes OUT_DIR/eknet_decoder/ and OUT_DIR/cyton_decoder/

Every seed starts with the chunking byte the targets read (see fuzz_targets/common.rs):
0x00..0x7F = fixed chunks of (k & 0x3F) + 1 bytes; 0x80 | (n - 1) followed by n control bytes =
chunk sizes cycling through them (each % 65).
"""

import os
import struct
import sys

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


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    for target, seeds in (("eknet_decoder", eknet_seeds()), ("cyton_decoder", cyton_seeds())):
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(d, "seed-" + name), "wb") as f:
                f.write(data)
        print(f"{d}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
