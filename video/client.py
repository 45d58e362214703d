"""Sending crops to a running service through its public REST API (POST /gallery), in batches, with
retries.

Idempotent by construction: the service answers the same image bytes with the existing item
("exists"), and a crop's bytes depend only on the video, so re-sending a batch after a dropped
connection, a 5xx or a Ctrl-C creates nothing twice. A batch the service refuses as a whole (bad
key, bad camera id) stops the ingest with the service's message; single refused crops are counted
and logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from video.errors import VideoError

logger = logging.getLogger(__name__)

RETRY_STATUSES = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class CropUpload:
    data: bytes  # JPEG
    camera_id: str
    captured_at: datetime
    track_ref: str
    filename: str


@dataclass
class SendStats:
    sent: int = 0
    created: int = 0
    existing: int = 0
    failed: int = 0
    requests: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)


class GalleryClient:
    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        batch_size: int = 16,
        attempts: int = 6,
        backoff_s: float = 0.5,
        timeout_s: float = 60.0,
        transport=None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import httpx

        if batch_size < 1:
            raise VideoError(f"batch size must be >= 1, got {batch_size}")
        self.httpx = httpx
        self.batch_size = batch_size
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url, headers={"X-API-Key": key}, timeout=timeout_s, transport=transport
        )
        self.stats = SendStats()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> GalleryClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check(self) -> None:
        """Fails early, with one line, when the service is unreachable or the key is refused."""
        try:
            response = self.http.get("/gallery", params={"limit": 1})
        except self.httpx.TransportError as exc:
            raise VideoError(f"service {self.base_url} unreachable: {exc}") from exc
        if response.status_code in (401, 403):
            # an ingest-only key may not list the gallery: that is fine, a refused key is not
            if response.status_code == 401:
                raise VideoError(f"service {self.base_url} refused the key: {_message(response)}")

    def send(self, uploads: Sequence[CropUpload]) -> SendStats:
        for i in range(0, len(uploads), self.batch_size):
            self._post(uploads[i : i + self.batch_size])
        return self.stats

    def _post(self, batch: Sequence[CropUpload]) -> None:
        files = [("files", (u.filename, u.data, "image/jpeg")) for u in batch]
        data = {
            "camera_id": [u.camera_id for u in batch],
            "captured_at": [u.captured_at.isoformat() for u in batch],
            "track_ref": [u.track_ref for u in batch],
        }
        for attempt in range(1, self.attempts + 1):
            self.stats.requests += 1
            try:
                response = self.http.post("/gallery", files=files, data=data)
            except self.httpx.TransportError as exc:
                problem, wait = f"connection failed: {exc}", None
            else:
                if response.status_code not in RETRY_STATUSES:
                    self._account(batch, response)
                    return
                problem = f"HTTP {response.status_code}: {_message(response)}"
                wait = _retry_after(response)
            if attempt == self.attempts:
                raise VideoError(f"service {self.base_url}: giving up after {attempt} attempts ({problem})")
            delay = wait if wait is not None else min(self.backoff_s * 2 ** (attempt - 1), 30.0)
            self.stats.retries += 1
            logger.warning("POST /gallery: %s; retry %d in %.1f s", problem, attempt, delay)
            self.sleep(delay)

    def _account(self, batch: Sequence[CropUpload], response) -> None:
        try:
            body = response.json()
        except ValueError:
            body = {}
        items = body.get("items") if isinstance(body, dict) else None
        if response.status_code >= 400 and not items:
            raise VideoError(f"service refused the crops: HTTP {response.status_code}: {_message(response)}")
        if response.status_code >= 400 and all(i.get("status") == "error" for i in items or []):
            # the whole batch was refused for the same reason: a re-run would fail the same way
            raise VideoError(f"service refused the crops: HTTP {response.status_code}: {_message(response)}")
        self.stats.sent += len(batch)
        self.stats.created += int(body.get("created", 0))
        self.stats.existing += int(body.get("existing", 0))
        for item in items or []:
            if item.get("status") == "error":
                self.stats.failed += 1
                message = (item.get("error") or {}).get("message", "refused")
                self.stats.errors.append(f"{item.get('filename')}: {message}")
                logger.warning("crop %s refused: %s", item.get("filename"), message)


def _message(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        return str(error.get("message") or error.get("detail") or body)[:300]
    return str(body)[:200]


def _retry_after(response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None
