"""The console's files, read without a browser: everything it loads is local (it must work offline)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "service" / "static"


class _Resources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.test_ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name) and not (tag == "a" and name == "href"):
                self.urls.append(values[name])
        if values.get("data-testid"):
            self.test_ids.append(values["data-testid"])


def parse_index() -> _Resources:
    parser = _Resources()
    parser.feed((STATIC / "index.html").read_text(encoding="utf-8"))
    return parser


def test_index_loads_only_its_own_static_files():
    urls = parse_index().urls
    assert sorted(urls) == ["/static/app.js", "/static/style.css"]
    for url in urls:
        assert (STATIC / url.removeprefix("/static/")).is_file()


def test_no_remote_resources_in_scripts_or_styles():
    remote = re.compile(r"""(?:url\(|import\s|fetch\(|src\s*=)\s*["']?(?:https?:)?//""", re.IGNORECASE)
    for name in ("app.js", "style.css", "index.html"):
        text = (STATIC / name).read_text(encoding="utf-8")
        assert not remote.search(text), f"{name} loads something from another host"
        assert "@import" not in text


def test_test_ids_are_unique():
    ids = parse_index().test_ids
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
