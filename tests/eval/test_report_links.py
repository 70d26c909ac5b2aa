"""Every link of report.html leads to its file, whatever the names of the images."""

from __future__ import annotations

import html
import urllib.parse
from html.parser import HTMLParser

from PIL import Image

from saicm.eval.codecs import parse_codec
from saicm.eval.report import write_report
from saicm.eval.runner import evaluate
from saicm.eval.tasks import create_task

#: names a file system allows (anything but "/" and NUL), each meaning something to a URL,
#: to HTML or to a shell
NAMES = [
    "what?.png",
    "50% off.png",
    "part#2.png",
    "it's \"quoted\".png",
    "ünïcødé 写真.png",
    "c:drive.png",
    "a&b<c>.png",
    "%41%2F.png",
    "l" * 240 + ".png",
]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [v for k, v in attrs if k in ("src", "href") and v is not None]


def test_every_link_resolves_to_an_existing_file(tmp_path):
    from skimage import data

    photo = data.astronaut()
    folder = tmp_path / "images"
    folder.mkdir()
    images = []
    for i, name in enumerate(NAMES):
        Image.fromarray(photo[i * 20 : i * 20 + 96, :128]).save(folder / name)
        images.append(folder / name)
    out = tmp_path / "report"
    res = evaluate(
        images,
        [parse_codec("jpeg:10,50")],
        [create_task("detection")],
        out,
        keep_images=len(images),
        progress=False,
    )
    files = write_report(res, out, anchors=["jpeg"])
    parser = _Links()
    parser.feed(files["html"].read_text())
    assert len([u for u in parser.links if u.startswith("views/")]) == 2 * len(NAMES)
    for url in parser.links:
        parts = urllib.parse.urlsplit(url)
        assert (parts.scheme, parts.netloc, parts.query, parts.fragment) == ("", "", "", ""), url
        assert (out / urllib.parse.unquote(parts.path)).is_file(), url
    page = files["html"].read_text()
    for name in NAMES[:-1]:  # each image is named in the page, escaped

        assert html.escape(name.rsplit(".", 1)[0]) in page
