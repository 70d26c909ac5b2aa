"""The report: every link leads to its file whatever the image names; BD-rate refusals are said."""

from __future__ import annotations

import html
import urllib.parse
from html.parser import HTMLParser

import pytest
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


def test_a_bd_rate_on_a_sliver_is_refused_in_the_table_and_the_json(tmp_path):
    import json
    import math

    from saicm.eval.runner import ORIGINAL, Point

    def point(codec, setting, bpp, acc):
        return Point(codec, setting, setting, 1, 0, bpp, 0.0, 0.0, {"detection/map": acc})

    # accuracy 0.2 log10(bpp) + 0.8 for the anchor; the test curve 20% cheaper, from 0.8 up
    anchor = [point("vvc", str(q), r, 0.2 * math.log10(r) + 0.8) for q, r in
              [(50, 0.1), (42, 0.2), (37, 0.4), (32, 0.8)]]
    sliver = [point("edge", f"m{k}", 0.8 * 0.79338 * 2**k,
                    0.2 * math.log10(0.79338 * 2**k) + 0.8) for k in range(4)]
    wide = [point("mse", f"m{k}", 0.8 * 0.15 * 2**k, 0.2 * math.log10(0.15 * 2**k) + 0.8)
            for k in range(4)]
    res = {
        "points": [point(ORIGINAL, ORIGINAL, 0.0, 1.0), *anchor, *sliver, *wide],
        "ground_truth": "test curves",
        "bad_images": {},
        "images": [],
        "tasks": ["detection"],
    }
    files = write_report(res, tmp_path, anchors=["vvc"])
    rows = {r["codec"]: r for r in json.loads(files["json"].read_text())["bd_rate"]["vvc"][
        "detection/map"]}
    assert rows["edge"]["bd_rate"] is None and rows["edge"]["overlap"] == 0.002
    assert rows["mse"]["bd_rate"] == pytest.approx(-20.0, abs=1e-6)
    assert rows["mse"]["overlap"] == 0.6737  # log10(0.8 / 0.15) / (log10(1.2) + 1)
    page = files["html"].read_text()
    assert "n/a<br><small>curves overlap on 0.2% of their accuracy range" in page
    assert json.loads(files["json"].read_text())["bd_min_overlap"] == 0.5
    # a user who lowers the bound (saicm eval --min-overlap) gets the number, and the record
    # says which bound it was computed under
    files = write_report(res, tmp_path / "low", anchors=["vvc"], min_overlap=0.0)
    result = json.loads(files["json"].read_text())
    rows = {r["codec"]: r for r in result["bd_rate"]["vvc"]["detection/map"]}
    assert rows["edge"]["bd_rate"] == pytest.approx(-20.0, abs=0.5)
    assert result["bd_min_overlap"] == 0.0


def test_a_bd_rate_that_most_image_draws_refuse_says_it_has_no_interval(tmp_path):
    """A BD-rate over enough overlap, whose bootstrap draws of the images mostly fall below the
    bound, has no interval: the console, the page and the JSON say so instead of showing a bare
    number that looks as solid as the others."""
    import json
    import math

    from saicm.eval.report import bd_table, console_table
    from saicm.eval.runner import ORIGINAL, Point

    def point(codec, bpp, acc, reps):
        return Point(codec, f"{bpp}", f"{codec}{bpp}", 1, 0, bpp, 0.0, 0.0,
                     {"detection/map": acc}, replicates={"detection/map": reps})  # fmt: skip

    rates = [0.1, 0.2, 0.4, 0.8]
    anchor = [point("vvc", r, a, [a] * 10) for r in rates for a in [0.2 * math.log10(r) + 0.8]]
    # 20% cheaper than the anchor over 67% of its range; in 7 of the 10 draws far below it
    test = [
        point(label, 0.8 * 0.15 * 2**k, a, [a] * good + [a - 1.0] * (10 - good))
        for label, good in [("unstable", 3), ("stable", 10)]
        for k in range(4)
        for a in [0.2 * math.log10(0.15 * 2**k) + 0.8]
    ]
    # a curve with one point that has no replicates (its cell scored without them)
    partial = [point("partial", p.bpp, p.metrics["detection/map"], p.replicates["detection/map"])
               for p in test if p.codec == "stable"]  # fmt: skip
    partial[0].replicates = {}
    points = [point(ORIGINAL, 0.0, 1.0, [1.0] * 10), *anchor, *test, *partial]
    rows = {r["codec"]: r for r in bd_table(points, "detection/map", "vvc")}
    assert rows["partial"]["bd_rate"] == pytest.approx(-20.0, abs=1e-6)
    assert "interval" not in rows["partial"]
    assert rows["partial"]["note"] == (
        "no interval: a point of partial or vvc has no bootstrap replicates"
    )
    assert rows["unstable"]["bd_rate"] == pytest.approx(-20.0, abs=1e-6)
    assert rows["unstable"]["interval"] is None
    assert rows["unstable"]["note"].startswith("no interval: 3 of 10 draws")
    assert rows["stable"]["interval"] == pytest.approx((-20.0, -20.0), abs=1e-6)
    assert rows["stable"]["note"] == ""
    text = console_table(points, {"vvc": {"detection/map": list(rows.values())}})
    line = [ln for ln in text.splitlines() if ln.startswith("unstable ")][-1]  # its BD-rate row
    assert "-20.0 %" in line and "no interval: 3 of 10 draws" in line
    res = {"points": points, "ground_truth": "test curves", "bad_images": {}, "images": [],
           "tasks": ["detection"]}  # fmt: skip
    files = write_report(res, tmp_path, anchors=["vvc"])
    page = files["html"].read_text()
    assert "-20.0 %<br><small>overlap 67%</small><br><small>no interval: 3 of 10" in page
    saved = json.loads(files["json"].read_text())["bd_rate"]["vvc"]["detection/map"]
    assert next(r for r in saved if r["codec"] == "unstable")["note"].startswith("no interval")
