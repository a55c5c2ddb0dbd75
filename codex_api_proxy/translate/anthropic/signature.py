"""Thinking signatures this proxy issues: a reasoning item travels to an Anthropic client as a `thinking`
block whose signature is "cxp1." + base64url(JSON {id, enc, m}) (item id, encrypted_content, upstream
model), so the item can be restored in place when the client echoes the block."""

from __future__ import annotations

import base64
import json
from typing import Any

SIGNATURE_PREFIX = "cxp1."


def encode_signature(item_id: str, encrypted: str, model: str) -> str:
    raw = json.dumps({"id": item_id, "enc": encrypted, "m": model}, separators=(",", ":")).encode()
    return SIGNATURE_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_signature(signature: Any) -> dict[str, str] | None:
    """The {id, enc, m} this proxy packed into a thinking signature, or None for anything else."""
    if not isinstance(signature, str) or not signature.startswith(SIGNATURE_PREFIX):
        return None
    packed = signature[len(SIGNATURE_PREFIX) :]
    try:
        data = json.loads(base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)))
    except ValueError:
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("id", "enc")):
        return None
    return data
