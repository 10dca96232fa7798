#!/usr/bin/env python3
"""The BitTorrent baseline's pieces for bench/lan: a bencoder, .torrent creation, tracker scrape.

Why: lanscatter is meant to beat what a user would pick instead, so bench/lan runs BitTorrent
(Debian's aria2c + opentracker) in the same lab and run. The .torrent must exist before T0 and
come from nothing but the data set, so it is built here (BEP 3, version 1, multi-file, private)
with hashlib, no pip dependency, and cached beside the data set like its sha256 list.

Also a script run *inside* the master's namespace (`scrape URL HEX_INFO_HASH`): prints how many
complete copies (seeders) the tracker knows, so the harness starts the peers only once the
master's seeder is announced.
"""

import hashlib
import json
import os
import sys
import time
import urllib.parse
import urllib.request

PIECE = 1 << 20


def bencode(v):
    """Bencoding of int, bytes, str, list and dict (keys sorted as raw bytes, as BEP 3 requires)."""
    if isinstance(v, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(bencode(k) + bencode(x) for k, x in items) + b"e"
    raise TypeError(f"cannot bencode {type(v).__name__}")


def bdecode(data):
    """Inverse of bencode (for tracker replies and self-checks); raises ValueError on bad input."""
    def parse(i):
        c = data[i:i + 1]
        if c == b"i":
            j = data.index(b"e", i)
            return int(data[i + 1:j]), j + 1
        if c == b"l" or c == b"d":
            i += 1
            out = []
            while data[i:i + 1] != b"e":
                if i >= len(data):
                    raise ValueError("truncated bencoding")
                x, i = parse(i)
                out.append(x)
            return (out if c == b"l" else dict(zip(out[::2], out[1::2]))), i + 1
        if c.isdigit():
            j = data.index(b":", i)
            n = int(data[i:j])
            if j + 1 + n > len(data):
                raise ValueError("truncated string in bencoding")
            return data[j + 1:j + 1 + n], j + 1 + n
        raise ValueError(f"bad bencoding at byte {i}")
    v, end = parse(0)
    if end != len(data):
        raise ValueError("trailing bytes after bencoding")
    return v


def piece_hashes(root, rels, piece=PIECE):
    """SHA-1 of each `piece`-byte piece of the files concatenated in order (empty files add nothing)."""
    out = []
    h = hashlib.sha1()
    filled = 0
    for rel in rels:
        with open(os.path.join(root, *rel.split("/")), "rb") as f:
            while True:
                block = f.read(piece - filled)
                if not block:
                    break
                h.update(block)
                filled += len(block)
                if filled == piece:
                    out.append(h.digest())
                    h, filled = hashlib.sha1(), 0
    if filled:
        out.append(h.digest())
    return b"".join(out)


def make_torrent(root, files, announce, name="data", piece=PIECE):
    """(torrent bytes, info-hash hex) for `files` [(rel, size)] under `root`, private, no DHT nodes."""
    rels = sorted(rel for rel, _ in files)
    sizes = dict(files)
    info = {
        "name": name, "piece length": piece, "private": 1,
        "files": [{"length": sizes[rel], "path": rel.split("/")} for rel in rels],
        "pieces": piece_hashes(root, rels, piece),
    }
    meta = {"announce": announce, "created by": "lanscatter bench/lan", "creation date": int(time.time()),
            "info": info}
    return bencode(meta), hashlib.sha1(bencode(info)).hexdigest()


def ensure_torrent(cache_dir, data_dir, files, announce, piece=PIECE, log=print):
    """The cached .torrent for this data set, tracker URL and piece size: (path, info-hash hex)."""
    key = hashlib.sha256(json.dumps([files, announce, piece]).encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"bt-{key}.torrent")
    meta = path + ".json"
    try:
        with open(meta) as f:
            return path, json.load(f)["info_hash"]
    except (OSError, ValueError, KeyError):
        pass
    t = time.monotonic()
    data, ih = make_torrent(data_dir, files, announce, piece=piece)
    with open(path, "wb") as f:
        f.write(data)
    with open(meta, "w") as f:
        json.dump({"info_hash": ih, "files": len(files), "piece": piece}, f)
    log(f"made {path}: {len(files)} files, {piece >> 10} KiB pieces, info hash {ih} "
        f"({time.monotonic() - t:.1f} s, before T0)")
    return path, ih


def scrape(announce, info_hash_hex):
    """Seeders the tracker reports for one torrent (0 when it does not know it yet)."""
    url = announce.replace("/announce", "/scrape") + "?info_hash=" + urllib.parse.quote(bytes.fromhex(info_hash_hex))
    with urllib.request.urlopen(url, timeout=5) as r:
        reply = bdecode(r.read(1 << 20))
    entry = reply.get(b"files", {}).get(bytes.fromhex(info_hash_hex), {})
    return int(entry.get(b"complete", 0))


def main(argv):
    if len(argv) == 3 and argv[0] == "scrape":
        try:
            print(scrape(argv[1], argv[2]))
        except (OSError, ValueError) as e:
            print(f"scrape failed: {e}", file=sys.stderr)
            return 1
        return 0
    print("usage: lan_torrent.py scrape ANNOUNCE_URL INFO_HASH_HEX", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
