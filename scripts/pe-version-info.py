#!/usr/bin/env python3
"""pe-version-info.py: decode a raw VS_VERSIONINFO resource and print it as JSON.

Why: scripts/check-msi.sh must prove that build.rs really embedded version info into
lanscatter.exe. `wrestool -x --type=16` (icoutils) extracts the resource bytes but does not
decode them; this parser does, following the documented layout: a tree of nodes, each
{wLength, wValueLength, wType, szKey (UTF-16LE, NUL-terminated), padding to 4 bytes, Value,
padding, Children}, with VS_FIXEDFILEINFO (signature 0xFEEF04BD) as the root's value and the
string tables under StringFileInfo/<lang-codepage>.

Usage: wrestool -x --type=16 lanscatter.exe | pe-version-info.py
Output: {"file_version": "0.1.0.0", "product_version": "0.1.0.0", "strings": {...}}
Exits non-zero with a message on malformed input.
"""

import json
import struct
import sys


def align4(n):
    return (n + 3) & ~3


def parse_node(buf, off):
    """Return (key, value_bytes, wtype, children, end_offset) for the node at off."""
    if off + 6 > len(buf):
        raise ValueError(f"truncated node header at {off}")
    length, value_len, wtype = struct.unpack_from("<HHH", buf, off)
    if length < 6 or off + length > len(buf):
        raise ValueError(f"bad node length {length} at {off}")
    end = off + length
    pos = off + 6
    key_end = pos
    while key_end + 1 < end and buf[key_end:key_end + 2] != b"\0\0":
        key_end += 2
    key = buf[pos:key_end].decode("utf-16-le")
    pos = align4(key_end + 2)
    # wValueLength counts WCHARs for text values (wType 1), bytes for binary ones.
    value_bytes = value_len * 2 if wtype == 1 else value_len
    value = buf[pos:pos + value_bytes]
    pos = align4(pos + value_bytes)
    children = []
    while pos < end:
        child = parse_node(buf, pos)
        children.append(child)
        pos = align4(child[4])
    return key, value, wtype, children, end


def version_from(ms, ls):
    return f"{ms >> 16}.{ms & 0xFFFF}.{ls >> 16}.{ls & 0xFFFF}"


def main():
    data = sys.stdin.buffer.read()
    if not data:
        sys.exit("pe-version-info.py: no input (is there a version resource in the exe?)")
    key, value, _, children, _ = parse_node(data, 0)
    if key != "VS_VERSION_INFO":
        sys.exit(f"pe-version-info.py: root key is {key!r}, not VS_VERSION_INFO")
    if len(value) < 52 or struct.unpack_from("<I", value, 0)[0] != 0xFEEF04BD:
        sys.exit("pe-version-info.py: VS_FIXEDFILEINFO missing or bad signature")
    fms, fls, pms, pls = struct.unpack_from("<IIII", value, 8)
    out = {
        "file_version": version_from(fms, fls),
        "product_version": version_from(pms, pls),
        "strings": {},
    }
    for ckey, _, _, tables, _ in children:
        if ckey != "StringFileInfo":
            continue
        for lang, _, _, strings, _ in tables:
            for skey, sval, _, _, _ in strings:
                out["strings"][skey] = sval.decode("utf-16-le").rstrip("\0")
            out["language"] = lang
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    print()


if __name__ == "__main__":
    try:
        main()
    except ValueError as err:
        sys.exit(f"pe-version-info.py: malformed VS_VERSIONINFO: {err}")
