"""The browser check's rules on small synthetic pages, in the same headless Chromium the book check uses.

Each faulty page must give a finding of its kind (a rule that is removed fails its test); the clean
page, which holds every element the rules look at in an acceptable form, must give none.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from robustode import browser_check as bc

ARTICLE = '<article class="bd-article" style="width: 690px; margin: 0 40px">{body}</article>'
PAGE = '<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head><body>{article}</body></html>'


def _png(path: Path, width: int, height: int = 40) -> None:
    """A grey PNG of the given size (no image library needed)."""
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _page(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(PAGE.format(title=name, article=ARTICLE.format(body=body)))
    return path


PROSE = "<h1>A chapter</h1><p>Prose comes first, as it should.</p>"
CLEAN = PROSE + """
<table><tr><th>model</th><th>mean |f| at t=0</th></tr><tr><td>ODENet</td><td>0.12</td></tr></table>
<div style="overflow-x: auto"><table style="width: 1400px"><tr><td>wide, but it scrolls</td></tr></table></div>
<p>A price of $5 and $6 is not maths; <code>$x$</code> in code is code; the set is ImgNet10.</p>
<p>See <a href="other.html#here">the other page</a> and <a href="other.html">its top</a>
   (see <a href="other.html">Reproducing</a>).</p>
<img src="small.png" style="max-width: 100%">
<div class="cell_input"><pre>print("code after prose")</pre></div>
<div class="cell_output"><pre>NODE keeps g(-1) &lt;= g(+1): True</pre></div>
<pre style="overflow-x: auto">short line</pre>
<div class="cell_input" style="display: none"><pre>import os</pre></div>
<p>One seed, 1 step, 2 steps, 1 and 1 runs, 1 + 1 seeds (its Eq. (6)); on cpu (x86_64, 2 cores, 1 thread);
   the key <code>gaussian_sigma_100</code>.</p>
<div class="citation-list"><div class="citation"><span class="label">[Yan et al., 2020]</span><p>Yan.</p></div></div>
"""

FAULTS = {
    "wide-table": '<table style="width: 1400px"><tr><td>key</td><td>no scroll container</td></tr></table>',
    "raw-table": "<p>| model | mean |f| at t=0 |\n|---|---|\n| ODENet | 0.1 |</p>",
    "raw-maths": r"<p>the field \(f(z, t)\) is written</p>",
    "plain-maths": "<p>the weights are softmax(QKᵀ/√d_k)</p>",
    "image": '<img src="missing.png">',
    "error-output": '<div class="cell_output"><pre>Traceback (most recent call last):\nValueError: boom</pre></div>',
    "dead-link": '<p><a href="nowhere.html">a page that is not there</a></p>',
    "cut-code": '<pre style="overflow-x: auto; white-space: pre">' + "x = 1  # " + "long " * 60 + "</pre>",
    "raw-output": "<div class=\"cell_output\"><pre>{'hidden': 32, 'lr': 0.001}</pre></div>",
    "plain-xref": "<p>no results file yet (see Reproducing)</p>",
    "plumbing": '<div class="cell tag_injected-parameters"><div class="cell_input"><pre>profile = "full"</pre></div></div>',
    "wording": "<p>PGD with 10 steps x 1 restarts on 50 images</p>",
    "raw-key": "<p>MNIST / gaussian_sigma_100 / ODENet</p>",
    "citation-label": '<div class="citation-list"><div class="citation"><span class="label">[ACW18]</span><p>A.</p></div></div>',
}
# More than one way to get some faults wrong: each must be caught on its own page.
VARIANTS = {
    "raw-maths-dollars": ("raw-maths", "<p>the loss $x^2 + y$ is plain text</p>"),
    "plain-maths-code": ("plain-maths", "<p>the weights <code>softmax(QK^T / sqrt(d_k))</code></p>"),
    "image-scaled": ("image", '<img src="wide.png" style="max-width: 100%">'),
    "dead-anchor": ("dead-link", '<p><a href="other.html#missing">no such anchor</a></p>'),
    "raw-table-output": ("raw-table", '<div class="cell_output"><pre>| a | b |\n|---|---|\n| 1 | 2 |</pre></div>'),
    "plumbing-nbval": ("plumbing", '<div class="cell_input"><pre># NBVAL_CHECK_OUTPUT\nprint(1)</pre></div>'),
    "plumbing-assert": ("plumbing", '<div class="cell_input"><pre>ok = True\nassert ok, "the prose rests on it"</pre></div>'),
    "plumbing-imports": ("plumbing", '<div class="cell_input"><pre>import os\n\nfrom robustode import plots</pre></div>'),
    "wording-s": ("wording", "<p>0 run(s) stopped by a solver failure</p>"),
    "wording-brackets": ("wording", "<p>75.0 vs printed 75.7 (reproduced (quick profile, indicative)).</p>"),
    "raw-output-inline": ("raw-output", "<p>MNIST test accuracy, ours: {'ClassicAttention': 0.5935, 'ODEAttention': 0.8181}</p>"),
}


@pytest.fixture(scope="module")
def browser():
    try:
        with bc.Browser() as b:
            yield b
    except bc.CheckUnavailable as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("site")
    _png(folder / "small.png", 300)
    _png(folder / "wide.png", 1400)
    _page(folder, "other.html", '<h1 id="here">Other</h1><p>Target page.</p>')
    _page(folder, "index.html", PROSE)
    return folder


def _findings(browser, site: Path, name: str, body: str) -> list[bc.Finding]:
    path = _page(site, name, body)
    return bc.judge(name, browser.facts(path), site, path)


def test_the_clean_page_has_no_findings(browser, site):
    assert _findings(browser, site, "clean.html", CLEAN) == []


@pytest.mark.parametrize("kind", FAULTS)
def test_each_fault_is_found(browser, site, kind):
    found = _findings(browser, site, f"{kind}.html", PROSE + FAULTS[kind])
    assert {f.kind for f in found} == {kind}, found


@pytest.mark.parametrize("name", VARIANTS)
def test_each_variant_of_a_fault_is_found(browser, site, name):
    kind, body = VARIANTS[name]
    found = _findings(browser, site, f"{name}.html", PROSE + body)
    assert {f.kind for f in found} == {kind}, found


def test_code_before_prose_on_the_first_screen_is_found(browser, site):
    body = '<h1>Title</h1><div class="cell_input"><pre>model = build()</pre></div><p>Prose only after the code.</p>'
    assert {f.kind for f in _findings(browser, site, "code-first.html", body)} == {"code-first"}


def test_code_below_the_first_screen_is_not_code_first(browser, site):
    body = '<h1>Title</h1><div style="height: 2000px"></div><div class="cell_input"><pre>model = build()</pre></div>'
    assert _findings(browser, site, "late-code.html", body) == []


def _size(path: Path) -> tuple[int, int]:
    return struct.unpack(">II", path.read_bytes()[16:24])


def test_a_screenshot_covers_the_whole_page(browser, site, tmp_path):
    path = _page(site, "long.html", PROSE + '<div style="height: 3000px"></div><p>end</p>')
    browser.facts(path)
    assert browser.screenshot(tmp_path / "long.png") == [tmp_path / "long.png"]
    width, height = _size(tmp_path / "long.png")
    assert width == bc.WIDTH and height > 3000


def test_a_very_long_page_is_taken_in_parts(browser, site, tmp_path, monkeypatch):
    monkeypatch.setattr(bc, "MAX_SCREENSHOT_HEIGHT", 2000)
    path = _page(site, "longer.html", PROSE + '<div style="height: 4500px"></div><p>end</p>')
    browser.facts(path)
    parts = browser.screenshot(tmp_path / "longer.png")
    assert [p.name for p in parts] == ["longer.png", "longer-2.png", "longer-3.png"]
    assert all(_size(p)[0] == bc.WIDTH for p in parts)


def test_the_command_checks_a_folder_and_fails_on_findings(browser, tmp_path, capsys):
    book = tmp_path / "html"
    book.mkdir()
    _page(book, "index.html", PROSE)
    _page(book, "bad.html", PROSE + FAULTS["dead-link"])
    shots = tmp_path / "shots"
    assert bc.main([str(book), "--screenshots", str(shots)]) == 1
    out = capsys.readouterr()
    assert "bad.html: dead-link:" in out.out and "2 pages, 1 finding" in out.err
    assert sorted(p.name for p in shots.iterdir()) == ["bad.png", "index.png"]
    assert bc.main([str(book), "--screenshots", "", "--allow", "dead-link"]) == 0
    assert bc.main([str(book), "--screenshots", "", "--only", "index"]) == 0


def test_without_a_built_book_the_command_says_so_in_one_line(tmp_path, capsys):
    assert bc.main([str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no built book at") and "\n" not in err


def test_links_outside_the_book_are_not_judged(tmp_path):
    page = tmp_path / "a.html"
    page.write_text("<p id='x'>x</p>")
    links = [{"href": "https://example.org/", "raw": "https://example.org/", "text": "web"},
             {"href": page.as_uri() + "#x", "raw": "a.html#x", "text": "self"},
             {"href": page.as_uri() + "#y", "raw": "a.html#y", "text": "bad anchor"}]
    assert [d.split(" ")[0] for d in bc.dead_links(links, page, tmp_path)] == ["'a.html#y'"]
