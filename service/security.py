"""API keys: stored as HMAC-SHA256 digests, compared in constant time, checked per role.

Roles: ingest (POST /gallery), search (search, gallery reads, metrics, cameras), admin (everything).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.context import ServiceContext, get_ctx
from service.errors import ApiError
from service.tables import ApiKey

logger = logging.getLogger(__name__)

KEY_HEADER = "X-API-Key"
# A fixed, public pepper: digests are not plain SHA-256 of the key, so they are useless elsewhere.
_PEPPER = b"rga-reid-service-api-key-v1"
MAX_KEY_LENGTH = 256


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    def allows(self, role: str) -> bool:
        return self.role == "admin" or self.role == role


def hash_key(secret: str) -> str:
    return hmac.new(_PEPPER, secret.encode("utf-8"), hashlib.sha256).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class KeyRing:
    """Keys from the environment (kept as digests in memory) plus the api_keys table."""

    def __init__(self, bootstrap: list[tuple[str, str, str]]) -> None:
        self._static = [(hash_key(secret), name, role) for name, role, secret in bootstrap]

    def authenticate(self, session: Session, secret: str) -> Principal | None:
        digest = hash_key(secret)
        found = None
        for stored, name, role in self._static:  # every entry compared: no early exit
            if hmac.compare_digest(stored, digest):
                found = Principal(name, role)
        if found:
            return found
        row = session.execute(select(ApiKey).where(ApiKey.key_hash == digest)).scalar_one_or_none()
        if row is not None and hmac.compare_digest(row.key_hash, digest) and not row.revoked:
            return Principal(row.name, row.role)
        return None


# Declares the header in OpenAPI (components.securitySchemes.ApiKey, and on every operation that needs a key,
# with the role it needs: OpenAPI 3.1 lets a non-OAuth requirement list roles), so /docs can send a key.
API_KEY = APIKeyHeader(
    name=KEY_HEADER,
    scheme_name="ApiKey",
    description="An API key with the role the operation lists (ingest, search or admin; admin passes every "
    "role). Create one with `reid keys create NAME --role ROLE`.",
    auto_error=False,  # a missing key is answered below, in the service's error format
)


def _authenticate(
    request: Request,
    ctx: ServiceContext = Depends(get_ctx),
    secret: str | None = Security(API_KEY),
) -> Principal:
    if not secret:
        raise ApiError(
            401,
            "unauthorized",
            f"missing API key (send it in the {KEY_HEADER} header)",
            headers={"WWW-Authenticate": KEY_HEADER},
        )
    if len(secret) > MAX_KEY_LENGTH:
        raise ApiError(401, "unauthorized", "invalid API key", headers={"WWW-Authenticate": KEY_HEADER})
    with ctx.sessions() as session:
        principal = ctx.keyring.authenticate(session, secret)
    if principal is None:
        raise ApiError(401, "unauthorized", "invalid API key", headers={"WWW-Authenticate": KEY_HEADER})
    request.state.principal = principal
    return principal


def require(role: str):
    """Dependency: the caller's key must have `role` (or admin)."""

    def dependency(principal: Principal = Security(_authenticate, scopes=[role])) -> Principal:  # noqa: B008
        if not principal.allows(role):
            raise ApiError(403, "forbidden", f"this API key has role {principal.role!r}; {role!r} is needed")
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency


# -- key management (CLI) ---------------------------------------------------------------
def create_key(session: Session, name: str, role: str) -> str:
    from service.settings import ROLES

    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if session.execute(select(ApiKey).where(ApiKey.name == name)).scalar_one_or_none() is not None:
        raise ValueError(f"a key named {name!r} already exists")
    secret = new_secret()
    session.add(ApiKey(name=name, key_hash=hash_key(secret), role=role, revoked=False))
    session.commit()
    return secret


def revoke_key(session: Session, name: str) -> bool:
    row = session.execute(select(ApiKey).where(ApiKey.name == name)).scalar_one_or_none()
    if row is None:
        return False
    row.revoked = True
    session.commit()
    return True


require_ingest = require("ingest")
require_search = require("search")
require_admin = require("admin")
