"""TEMPORARY: run the service in dev mode before service/index.py and service/footfall.py (wip/index) land,
using the test stand-ins. Delete together with standins.py once they are merged.

    python -m tests.service.devserver [--port 8000] [--data-dir data/dev]
"""

from __future__ import annotations

import importlib.util
import sys

from tests.service import standins

for name in ("service.index", "service.footfall"):
    if importlib.util.find_spec(name) is None:
        sys.modules[name] = standins

if __name__ == "__main__":
    from reid.cli import main

    raise SystemExit(main(["serve", "--dev", *sys.argv[1:]]))
