"""Ultralytics ``.engine`` files: a metadata header in front of the TensorRT plan.

Ultralytics' TensorRT export writes ``[4-byte little-endian length n][n bytes of UTF-8 JSON]
[serialized plan]``; the JSON carries ``names``, ``imgsz``, ``stride``, ``task``, ``batch``,
``args`` and more. TensorRT itself only accepts the plan, so whoever hands the file to TensorRT
must skip the header, and the header is where an imported engine's class names and input size
come from. A plain plan (``trtexec --saveEngine``, this workspace's builder) has no header: it
starts with TensorRT's own magic. No TensorRT is imported here.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A serialized TensorRT plan begins with this tag; a header's length field never spells it in
# practice (it would be a ~1.9 GB JSON document).
PLAN_MAGIC = b'ftrt'
LENGTH_BYTES = 4


class EngineHeaderError(ValueError):
    """An engine file whose metadata header is cut short or not JSON; the message names the file."""


@dataclass(frozen=True)
class EngineFile:
    """What an ``.engine`` holds: the header's metadata (empty for a plain plan) and where the
    plan starts."""
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    plan_offset: int = 0

    @property
    def has_header(self) -> bool:
        return self.plan_offset > 0


def parse_header(data: bytes, where: str | Path) -> tuple[dict[str, Any], int]:
    """(metadata, offset of the plan) for an engine file's bytes; ({}, 0) for a plain plan.

    A header is recognised by a length that fits inside the file followed by a JSON object; bytes
    that start like a header (a ``{`` after the length) but do not hold one are an error rather
    than a plan, since TensorRT would only fail later with a less useful message.
    """
    if len(data) < LENGTH_BYTES + 1:
        raise EngineHeaderError(f'{where}: {len(data)} bytes, too short to be a TensorRT engine')
    if data[:LENGTH_BYTES] == PLAN_MAGIC:
        return {}, 0
    (length,) = struct.unpack_from('<I', data, 0)
    starts_like_json = data[LENGTH_BYTES:LENGTH_BYTES + 1] == b'{'
    if not starts_like_json:
        # Not Ultralytics' layout; TensorRT decides whether it is a plan.
        return {}, 0
    end = LENGTH_BYTES + length
    if length < 2 or end > len(data):
        raise EngineHeaderError(
            f'{where}: Ultralytics metadata header says {length} bytes of JSON but the file has '
            f'{len(data) - LENGTH_BYTES} after the length; the file is truncated or not an engine')
    try:
        metadata = json.loads(data[LENGTH_BYTES:end].decode('utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineHeaderError(f'{where}: Ultralytics metadata header ({length} bytes) is not '
                                f'UTF-8 JSON: {exc}') from exc
    if not isinstance(metadata, dict):
        raise EngineHeaderError(f'{where}: Ultralytics metadata header is JSON but not an object '
                                f'({type(metadata).__name__})')
    if end == len(data):
        raise EngineHeaderError(f'{where}: Ultralytics metadata header ({length} bytes) with no '
                                'TensorRT plan after it')
    return metadata, end


def read_engine(path: str | Path) -> EngineFile:
    """The header (if any) of the engine at ``path``; reads only as much as the header needs."""
    p = Path(path)
    try:
        with open(p, 'rb') as f:
            head = f.read(LENGTH_BYTES + 1)
            if len(head) == LENGTH_BYTES + 1 and head[:LENGTH_BYTES] != PLAN_MAGIC \
                    and head[LENGTH_BYTES:] == b'{':
                (length,) = struct.unpack_from('<I', head, 0)
                # the header plus one byte, so a header with nothing after it is seen
                head += f.read(length)
                head += f.read(1)
    except OSError as exc:
        raise EngineHeaderError(f'{p}: unreadable: {exc}') from exc
    metadata, offset = parse_header(head, p)
    return EngineFile(path=p, metadata=metadata, plan_offset=offset)


def plan_bytes(path: str | Path) -> bytes:
    """The serialized TensorRT plan inside the engine at ``path`` (after any Ultralytics header)."""
    p = Path(path)
    data = p.read_bytes()
    _, offset = parse_header(data, p)
    return data[offset:]


def header_class_names(metadata: dict[str, Any], where: str | Path) -> list[str] | None:
    """Class names from a header's ``names`` (JSON turns Ultralytics' {0: 'person'} into
    {"0": "person"}; a list is taken as is); None when the header has none."""
    names = metadata.get('names')
    if names is None:
        return None
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return list(names)
    if isinstance(names, dict):
        try:
            items = sorted((int(k), v) for k, v in names.items())
        except (TypeError, ValueError) as exc:
            raise EngineHeaderError(f'{where}: metadata names keys must be class indices: {exc}') from exc
        if [i for i, _ in items] == list(range(len(items))) and all(isinstance(v, str) for _, v in items):
            return [v for _, v in items]
    raise EngineHeaderError(f'{where}: metadata names must map class indices 0..N-1 to names, '
                            f'got {names!r:.200}')
