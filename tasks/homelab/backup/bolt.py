"""A read-only structural check of a BoltDB file, so a backup can say its copy opens.

There is no bbolt tool on the machine that runs the toolkit, and a copy that
bbolt would refuse is worth nothing, so this reads the on-disk format (bbolt
``internal/common``: page, meta, branch and leaf elements) and walks it the
way ``bbolt check`` does: the newest meta page whose checksum holds, then
every page the bucket tree reaches, each within the file, each page's own id
where it is read, each reached once, keys in order. A copy torn by a commit
during the copy points at pages that were rewritten since, and fails here.
"""

from __future__ import annotations

import struct
from pathlib import Path

MAGIC = 0xED0CDAED
VERSION = 2
BRANCH, LEAF, META, FREELIST = 0x01, 0x02, 0x04, 0x10
BUCKET_LEAF = 0x01
PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
META_FIELDS = struct.Struct("<IIIIQQQQQ")  # magic, version, page size, flags, root, sequence, freelist, pgid, txid
ELEMENT = struct.Struct("<IIII")  # branch: pos, ksize, pgid (8 bytes); leaf: flags, pos, ksize, vsize
NO_FREELIST = 0xFFFFFFFFFFFFFFFF
FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3


def fnv64a(data: bytes) -> int:
    value = FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return value


class Corrupt(Exception):
    """The file is not a BoltDB database bbolt would open, or its pages disagree."""


def _meta(data: bytes, offset: int) -> tuple[int, int, int, int, int] | None:
    """(page size, root, freelist, pgid, txid) of the meta page at ``offset``, or None when it does not validate."""
    body = data[offset + PAGE_HEADER.size : offset + PAGE_HEADER.size + META_FIELDS.size + 8]
    if len(body) < META_FIELDS.size + 8:
        return None
    magic, version, page_size, _, root, _, freelist, pgid, txid = META_FIELDS.unpack_from(body)
    (checksum,) = struct.unpack_from("<Q", body, META_FIELDS.size)
    if magic != MAGIC or version != VERSION or fnv64a(body[: META_FIELDS.size]) != checksum:
        return None
    return page_size, root, freelist, pgid, txid


class _Walk:
    def __init__(self, data: bytes, page_size: int, high: int) -> None:
        self.data, self.page_size, self.high = data, page_size, high
        self.seen: set[int] = set()

    def page(self, pgid: int) -> tuple[int, int, int, int]:
        if pgid < 2 or pgid >= self.high:
            raise Corrupt(f"page {pgid} is outside the database (pages 2..{self.high - 1})")
        offset = pgid * self.page_size
        if offset + PAGE_HEADER.size > len(self.data):
            raise Corrupt(f"page {pgid} is past the end of the file")
        own, flags, count, overflow = PAGE_HEADER.unpack_from(self.data, offset)
        if own != pgid:
            raise Corrupt(f"page {pgid} holds page {own}'s header")
        for reached in range(pgid, pgid + overflow + 1):
            if reached in self.seen:
                raise Corrupt(f"page {reached} is reached twice")
            self.seen.add(reached)
        return offset, flags, count, overflow

    def bucket(self, root: int) -> None:
        offset, flags, count, _ = self.page(root)
        self.node(self.data, offset, flags, count, root)

    def node(self, data: bytes, offset: int, flags: int, count: int, where: int) -> None:
        keys = []
        for i in range(count):
            at = offset + PAGE_HEADER.size + i * ELEMENT.size
            if at + ELEMENT.size > len(data):
                raise Corrupt(f"page {where}: element {i} is past its page")
            if flags == BRANCH:
                pos, ksize = struct.unpack_from("<II", data, at)
                (child,) = struct.unpack_from("<Q", data, at + 8)
                keys.append(data[at + pos : at + pos + ksize])
                child_offset, child_flags, child_count, _ = self.page(child)
                self.node(self.data, child_offset, child_flags, child_count, child)
            elif flags == LEAF:
                element_flags, pos, ksize, vsize = ELEMENT.unpack_from(data, at)
                keys.append(data[at + pos : at + pos + ksize])
                value = data[at + pos + ksize : at + pos + ksize + vsize]
                if len(value) != vsize:
                    raise Corrupt(f"page {where}: a value runs past the page")
                if element_flags & BUCKET_LEAF:
                    self.nested(value, where)
            else:
                raise Corrupt(f"page {where} has flags {flags:#x}, not a branch or leaf page")
        if keys != sorted(keys) or len(set(keys)) != len(keys):
            raise Corrupt(f"page {where}: keys out of order")

    def nested(self, value: bytes, where: int) -> None:
        """A sub-bucket: its own root page, or inline (root 0: a page header and leaf elements in the value)."""
        if len(value) < 16:
            raise Corrupt(f"page {where}: a bucket header is too short")
        (root,) = struct.unpack_from("<Q", value, 0)
        if root:
            self.bucket(root)
            return
        _, flags, count, _ = PAGE_HEADER.unpack_from(value, 16) if len(value) >= 32 else (0, LEAF, 0, 0)
        if count and flags != LEAF:
            raise Corrupt(f"page {where}: an inline bucket is not a leaf")
        self.node(value, 16, LEAF, count, where)


def check(path: Path) -> list[str]:
    """What is wrong with the BoltDB file at ``path`` (empty: bbolt would open it and reach every page)."""
    data = path.read_bytes()
    metas = [m for m in (_meta(data, 0), _meta(data, _page_size_guess(data))) if m is not None]
    if not metas:
        return ["no valid meta page (not a BoltDB file, or both meta pages are damaged)"]
    page_size, root, freelist, high, _ = max(metas, key=lambda m: m[4])
    if len(data) < high * page_size:
        return [f"the file ends at {len(data)} bytes; its meta page says {high} pages of {page_size}"]
    walk = _Walk(data, page_size, high)
    try:
        if freelist != NO_FREELIST:
            _, flags, _, _ = walk.page(freelist)
            if flags != FREELIST:
                raise Corrupt(f"the freelist page {freelist} has flags {flags:#x}")
        walk.bucket(root)
    except Corrupt as err:
        return [str(err)]
    return []


def _page_size_guess(data: bytes) -> int:
    """Where the second meta page starts: after the first, whose page size the first meta records."""
    if len(data) >= PAGE_HEADER.size + 12:
        (size,) = struct.unpack_from("<I", data, PAGE_HEADER.size + 8)
        if 512 <= size <= 1 << 20:
            return int(size)
    return 4096
