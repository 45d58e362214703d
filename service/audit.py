"""The audit log: each search and each deletion, with the key that did it."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy.orm import Session

from service.tables import AuditLog

logger = logging.getLogger(__name__)


def record(
    session: Session, key_name: str | None, action: str, detail: dict[str, Any], hits: int | None = None
):
    """Add an audit entry to `session` (committed with the caller's transaction)."""
    session.add(AuditLog(key_name=key_name, action=action, detail=json.dumps(detail, default=str), hits=hits))
