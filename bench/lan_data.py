"""Data sets for bench/lan: generated once into a cache, verified independently with sha256sum.

Why: a benchmark run must not pay for generating gigabytes of data each time, and its verdict
("every peer ended byte-identical") must not trust lanscatter's own hashing. So the data set is
generated once per size into /var/tmp/lanscatter-bench/data-<size>/ from os.urandom (incompressible,
so LZ4 cannot flatter the numbers), its sha256sum list is computed once with coreutils and stored
beside it (outside the synced folder), and each peer's folder is checked against that list with
coreutils `sha256sum` plus an exact comparison of the file set.

Shapes (the file list is deterministic, seeded by the size; the bytes are random):
- "mixed" (from the issue and the field measurements): half the bytes in 256 MiB files, a quarter in
  32 MiB files, a quarter in ~200 files of ~1.3 MiB, in a few subdirectories. Small sizes degrade
  gracefully (no 256 MiB file below 512 MiB, etc.).
- "many-small" (issue 19): 3 files of 6 % of the bytes each (24 MiB at 400 MiB), the rest in files of
  1-32 KiB (~20,000 at 400 MiB) in 3 levels of nested directories; every 100th small file is empty
  and every 97th is a byte-for-byte duplicate of an earlier one (dedup, and the empty/duplicate tree
  on which BitTorrent clients were seen to end with wrong content).
"""

import hashlib
import json
import os
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

MiB = 1 << 20
GiB = 1 << 30
CACHE_ROOT = "/var/tmp/lanscatter-bench"


SHAPES = ("mixed", "many-small")


def dataset_spec(total, shape="mixed"):
    """Deterministic list of (relative path, size) summing exactly to `total` bytes."""
    return dataset_plan(total, shape)[0]


def dataset_plan(total, shape="mixed"):
    """(files, dups): the file list and {rel: rel of an earlier file whose bytes it repeats}."""
    if shape == "many-small":
        return _many_small(total)
    if shape != "mixed":
        raise ValueError(f"unknown data set shape {shape!r}; known: {', '.join(SHAPES)}")
    return _mixed(total), {}


def _mixed(total):
    rng = random.Random(total)
    files = []
    big = (total // 2) // (256 * MiB) if total >= 512 * MiB else 0
    for i in range(big):
        files.append((f"big/image-{i:02d}.bin", 256 * MiB))
    rest = total - big * 256 * MiB
    mid = (rest // 2) // (32 * MiB) if total >= 64 * MiB else 0
    for i in range(mid):
        files.append((f"mid/pack-{i:02d}.dat", 32 * MiB))
    small_total = rest - mid * 32 * MiB
    n_small = max(1, min(200, small_total // (256 * 1024)))
    mean = small_total / n_small
    left = small_total
    for i in range(n_small):
        if i == n_small - 1:
            size = left
        else:
            size = int(mean * rng.uniform(0.5, 1.5))
            size = max(0, min(size, left - (n_small - 1 - i)))
        files.append((f"small/d{i % 8}/file-{i:03d}.bin", size))
        left -= size
    assert sum(s for _, s in files) == total
    return files


def _many_small(total):
    rng = random.Random(f"many-small-{total}")
    big = int(total * 0.06)
    files = [(f"big/blob-{i}.bin", big) for i in range(3)]
    left = total - 3 * big
    dups = {}
    sizes = {}  # small file index -> size, for duplicates
    i = 0
    while left > 0:
        rel = f"tree/a{i % 7}/b{(i // 7) % 9}/c{(i // 63) % 5}/f{i:05d}.bin"
        if i % 100 == 50:
            size = 0
        elif i % 97 == 96 and i > 200:
            src = next((j for j in (rng.randrange(i - 200, i) for _ in range(20)) if 0 < sizes[j] <= left), None)
            if src is None:
                size = min(left, rng.randint(1024, 32 * 1024))
            else:
                size = sizes[src]
                dups[rel] = files[3 + src][0]
        else:
            size = min(left, rng.randint(1024, 32 * 1024))
            if left - size < 1024:  # no runt at the end: the last file takes the rest
                size = left if left <= 32 * 1024 else size
        sizes[i] = size
        files.append((rel, size))
        left -= size
        i += 1
    assert sum(s for _, s in files) == total
    return files, dups


def _spec_id(spec):
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


def ensure_dataset(total, root=CACHE_ROOT, log=print, shape="mixed"):
    """Return (data_dir, {relpath: sha256}); generates and hashes only if the cache is absent/stale."""
    spec, dups = dataset_plan(total, shape)
    base = os.path.join(root, f"data-{total}" if shape == "mixed" else f"data-{shape}-{total}")
    data_dir = os.path.join(base, "data")
    stamp = os.path.join(base, "complete.json")
    sid = _spec_id([spec, dups] if dups else spec)
    try:
        with open(stamp) as f:
            meta = json.load(f)
        if meta.get("spec_id") == sid:
            return data_dir, meta["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    log(f"generating data set: {len(spec)} files ({len(dups)} duplicates, "
        f"{sum(1 for _, n in spec if n == 0)} empty), {total / MiB:.0f} MiB into {data_dir}")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(data_dir)
    for rel, size in spec:
        path = os.path.join(data_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if rel in dups:
            shutil.copyfile(os.path.join(data_dir, dups[rel]), path)
            continue
        with open(path, "wb") as f:
            left = size
            while left:
                n = min(left, 4 * MiB)
                f.write(os.urandom(n))
                left -= n
    sums = sha256_tree(data_dir, [rel for rel, _ in spec])
    with open(stamp + ".tmp", "w") as f:
        json.dump({"spec_id": sid, "total": total, "files": len(spec), "sha256": sums}, f)
    os.rename(stamp + ".tmp", stamp)
    return data_dir, sums


def invalidate(data_dir):
    """Forget a cached data set (it is regenerated next time), e.g. when something wrote into it."""
    try:
        os.remove(os.path.join(os.path.dirname(data_dir), "complete.json"))
    except FileNotFoundError:
        pass


def sha256_tree(root, rels, jobs=2, prefix=()):
    """{rel: sha256 hex} computed by coreutils sha256sum, in `jobs` parallel batches."""
    batches = [rels[i::jobs] for i in range(jobs)]

    def one(batch):
        out = {}
        for k in range(0, len(batch), 2000):  # bounded command lines for trees of 20,000+ files
            r = subprocess.run(list(prefix) + ["sha256sum", "--"] + batch[k:k + 2000], cwd=root,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for line in r.stdout.splitlines():
                digest, _, name = line.partition("  ")
                out[name] = digest
            if r.returncode != 0:
                for line in r.stderr.splitlines():
                    out.setdefault(f"<error> {line}", "error")
        return out

    result = {}
    with ThreadPoolExecutor(jobs) as ex:
        for part in ex.map(one, batches):
            result.update(part)
    return result


def list_files(root):
    """All regular files under root as relative '/' paths; also returns non-regular oddities."""
    files, odd = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            (files if os.path.isfile(full) and not os.path.islink(full) else odd).append(rel)
    return sorted(files), odd


def verify_copy(dst, expected, jobs=2, ignore=None, prefix=()):
    """List of human-readable differences between dst and the expected {rel: sha256}; [] if identical.

    `ignore` is an optional regex of extra paths to tolerate (an engine's own state files)."""
    import re

    problems = []
    files, odd = list_files(dst)
    # A peer's marker (.lanscatter/ at the root) is never synced: not an extra.
    files = [f for f in files if f in expected or not f.lower().startswith(".lanscatter/")]
    if ignore:
        files = [f for f in files if f in expected or not re.search(ignore, f)]
    for rel in odd:
        problems.append(f"not a regular file: {rel}")
    have = set(files)
    want = set(expected)
    for rel in sorted(want - have):
        problems.append(f"missing: {rel}")
    for rel in sorted(have - want):
        problems.append(f"extra: {rel}")
    sums = sha256_tree(dst, sorted(want & have), jobs=jobs, prefix=prefix)
    for rel in sorted(want & have):
        if sums.get(rel) != expected[rel]:
            problems.append(f"content differs: {rel}")
    for key in sums:
        if key.startswith("<error>"):
            problems.append(key)
    return problems


def allocated_bytes(root):
    """Bytes actually allocated under root (st_blocks); a progress signal independent of the engine."""
    total = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total
