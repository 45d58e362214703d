"""FastAPI dependencies: the one way a route handler reaches shared state.

    async def handler(ctx: Ctx, principal: AdminKey): ...
    def listing(session: DbSession, _: SearchKey): ...

`Ctx` is the running service's context (503 while starting or stopping); `DbSession` is a read
session from it, closed after the request; `IngestKey`, `SearchKey`, `AdminKey` authenticate the
X-API-Key header and require that role (admin keys pass every role check).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from service.context import ServiceContext, get_ctx
from service.security import Principal, require_admin, require_ingest, require_search

Ctx = Annotated[ServiceContext, Depends(get_ctx)]


def get_session(ctx: Ctx) -> Iterator[Session]:
    """One session per request, closed afterwards."""
    with ctx.sessions() as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]
IngestKey = Annotated[Principal, Depends(require_ingest)]
SearchKey = Annotated[Principal, Depends(require_search)]
AdminKey = Annotated[Principal, Depends(require_admin)]

__all__ = ["AdminKey", "Ctx", "DbSession", "IngestKey", "SearchKey", "get_session"]
