"""Container health check: GET /healthz on the local service; exit 0 when it answers {"status": "ok"}.

Standard library only, so the image needs no curl. Port from REID_PORT (default 8000).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request


def main() -> int:
    port = os.environ.get("REID_PORT", "8000")
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:  # noqa: S310 - fixed local URL
            body = json.load(response)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"unhealthy: {url}: {exc}\n")
        return 1
    if body.get("status") != "ok":
        sys.stderr.write(f"unhealthy: {url} answered {body!r}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
