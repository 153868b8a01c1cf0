"""Read the built book the way a reader does: every page in headless Chromium at 1280 px.

``python -m robustode.browser_check [_build/html]`` opens each HTML page of the book with Debian's
``chromium`` and ``chromedriver`` (driven by selenium; nothing is downloaded), waits for MathJax,
takes a full-page screenshot into ``_build/screenshots/`` and fails (exit 1, one line per finding)
on what makes a page hard to read:

* ``wide-table`` — a table wider than the content column with no horizontal scroll container;
* ``raw-table`` — pipe-table text (``| a | b |`` / ``|---|``) that was not rendered as a table;
* ``raw-maths`` — ``$...$``, ``\\(...\\)`` or TeX commands outside typeset maths, and maths MathJax
  could not typeset;
* ``plain-maths`` — formulas typed as plain text (``∑``, ``∫``, ``√``, ``ᵀ``, ``d_k``) or as code;
* ``image`` — an image that did not load, or one shown below :data:`MIN_IMAGE_SCALE` of its size;
* ``error-output`` — an error or traceback in a cell output, or a Sphinx system message;
* ``dead-link`` — a link to a page or anchor of the book that does not exist;
* ``code-first`` — a page whose first screen shows code before any prose;
* ``cut-code`` — a code block whose lines are cut off (it scrolls sideways);
* ``raw-output`` — a raw Python dict printed as a cell's output;
* ``plain-xref`` — "(see Reproducing)": a cross-reference written as text, not as a link;
* ``plumbing`` — a visible papermill parameters cell, nbval marker, assertion or import-only cell;
* ``wording`` — "1 steps", "run(s)", "indicative)).";
* ``raw-key`` — an identifier such as ``gaussian_sigma_100`` shown as text instead of its label;
* ``citation-label`` — bibliography labels such as ``[ACW18]`` where the text cites author-year.

The facts are gathered by one script in the page (:data:`COLLECT_JS`) and judged in Python
(:func:`judge`), so the rules are tested on small synthetic pages (``tests/test_browser_check.py``).
"""

from __future__ import annotations

import argparse
import html.parser
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from robustode.wording import plural

WIDTH, HEIGHT = 1280, 900
MIN_IMAGE_SCALE = 0.75  # a figure drawn at 100 dpi and shown smaller than this has text below ~7.5 pt
MAX_SCREENSHOT_HEIGHT = 16000  # taller pages are saved in parts
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)
SKIPPED_FOLDERS = {"_static", "_sources", "_images", "_sphinx_design_static", "_panels_static"}
KINDS = ("wide-table", "raw-table", "raw-maths", "plain-maths", "image", "error-output", "dead-link", "code-first",
         "cut-code", "raw-output", "plain-xref", "plumbing", "wording", "raw-key", "citation-label")


class CheckUnavailable(RuntimeError):
    """The check cannot run here (no browser, no built book); the message says what to do."""


@dataclass(frozen=True)
class Finding:
    page: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.page}: {self.kind}: {self.detail}"


# Runs in the page (execute_async_script): waits for MathJax, then returns the facts judge() rules on.
COLLECT_JS = r"""
const done = arguments[arguments.length - 1];
const collect = () => {
  const article = document.querySelector('article.bd-article') || document.querySelector('[role=main]')
                  || document.querySelector('main') || document.body;
  const column = article.getBoundingClientRect();
  const style = getComputedStyle(article);
  const columnWidth = column.width - parseFloat(style.paddingLeft || 0) - parseFloat(style.paddingRight || 0);
  const short = (s, n = 90) => s.replace(/\s+/g, ' ').trim().slice(0, n);
  const CODE = 'pre, code, kbd, samp, script, style, textarea, svg, mjx-container, .MathJax, .highlight';
  const visible = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  // Text of an element outside code and typeset maths, and inside no nested block of its own kind.
  // (unlinked: the same with the text of links replaced by a marker.)
  const ownText = (el) => {
    let text = '', unlinked = '';
    const walk = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      if (n.parentElement.closest(CODE)) continue;
      text += n.data;
      unlinked += n.parentElement.closest('a') ? '[link]' : n.data;
    }
    return {text, unlinked};
  };
  const BLOCKS = 'p, li, td, th, dd, dt, h1, h2, h3, h4, h5, h6, caption, figcaption, blockquote, .admonition-title';
  const blocks = [...article.querySelectorAll(BLOCKS)]
    .filter(el => !el.closest(CODE) && ![...el.children].some(c => c.matches('p, li, div, table, ul, ol')));
  const texts = blocks.map(ownText);
  // Prose may also sit directly in a div (raw HTML, a rendered paragraph without <p>).
  for (const el of article.querySelectorAll('div')) {
    let own = '';
    for (const n of el.childNodes) if (n.nodeType === 3) own += n.data;
    if (own.trim() && !el.closest(CODE)) texts.push({text: own, unlinked: el.closest('a') ? '' : own});
  }
  const outputs = [...article.querySelectorAll('.cell_output pre, .output pre')].map(el => el.textContent);
  const tables = [...article.querySelectorAll('table')].filter(visible).map(t => {
    let scroller = null;
    for (let el = t.parentElement; el && el !== article.parentElement; el = el.parentElement) {
      const ox = getComputedStyle(el).overflowX;
      if ((ox === 'auto' || ox === 'scroll') && el.getBoundingClientRect().width <= columnWidth + 2) { scroller = el; break; }
    }
    return {width: t.getBoundingClientRect().width, scrollable: !!scroller,
            text: short(t.textContent, 60)};
  });
  const images = [...article.querySelectorAll('img')].map(img => {
    const a = img.closest('a');
    return {src: img.getAttribute('src') || '', complete: img.complete, naturalWidth: img.naturalWidth,
            width: img.getBoundingClientRect().width, display: getComputedStyle(img).display,
            link: a ? a.href : null};
  });
  const links = [...document.querySelectorAll('a[href]')].map(a => ({href: a.href, raw: a.getAttribute('href'),
                                                                     text: short(a.textContent, 40)}));
  const errors = [...article.querySelectorAll('.output.traceback, .output.error, .cell_output .traceback, '
                                             + '.system-message, .problematic')].map(el => short(el.textContent));
  const mathErrors = [...article.querySelectorAll('mjx-merror, .MathJax_Error, merror')].map(el => short(el.textContent));
  const inlineCode = [...article.querySelectorAll('code')].filter(el => !el.closest('pre, .highlight, a'))
    .map(el => el.textContent);
  const cutCode = [...article.querySelectorAll('pre')].filter(visible)
    .filter(el => el.scrollWidth > el.clientWidth + 2).map(el => short(el.textContent, 60));
  // The first screen: where the first code input and the first prose paragraph start.
  const top = (sel) => {
    const found = [...article.querySelectorAll(sel)].filter(visible).map(el => el.getBoundingClientRect().top + window.scrollY);
    return found.length ? Math.min(...found) : null;
  };
  // Code a reader sees (a closed "show code" toggle has no size), with the cell's tags (myst-nb: tag_<name>).
  const inputs = [...article.querySelectorAll('.cell_input')].filter(visible).map(el => {
    const cell = el.closest('.cell');
    return {text: el.textContent, tags: cell ? [...cell.classList].filter(c => c.startsWith('tag_')).map(c => c.slice(4)) : []};
  });
  const labels = [...document.querySelectorAll('.citation .label, .citation-list .label')].map(el => el.textContent.trim());
  done({
    title: document.title, columnWidth, viewportHeight: window.innerHeight,
    texts, outputs, tables, images, links, errors, mathErrors, inlineCode, cutCode, inputs, labels,
    ids: [...document.querySelectorAll('[id]')].map(el => el.id),
    firstCode: top('.cell_input, div.highlight, pre'),
    firstProse: top('p, li, dd, table'),
  });
};
// MathJax 3 loads asynchronously: wait for its script (up to 10 s), then for its first typesetting.
const waitMaths = (tries = 0) => {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) return mj.startup.promise;
  if (tries < 50 && document.querySelector('script[src*="mathjax" i]')) {
    return new Promise(resolve => setTimeout(resolve, 200)).then(() => waitMaths(tries + 1));
  }
  return Promise.resolve();
};
const ready = () => document.readyState === 'complete' ? Promise.resolve()
  : new Promise(resolve => window.addEventListener('load', resolve, {once: true}));
Promise.race([ready().then(waitMaths), new Promise(resolve => setTimeout(resolve, 20000))])
  .then(collect, collect).catch(err => done({error: String(err)}));
"""

PLURALS = ("steps", "restarts", "runs", "seeds", "epochs", "images", "repetitions", "iterations", "models", "points",
           "rows", "evaluations", "attacks", "samples", "batches", "layers", "filters", "classes", "pages", "findings",
           "units", "times", "parameters", "tests", "checks", "failures", "threads", "cores", "data sets")
# "1 steps" (not "1 and 1 runs", "1 + 1 seeds"); "seed(s)"; a parenthesis of several words closed inside
# another: "(reproduced (quick, indicative))".
WORDING = re.compile(r"(?<![\d.,])(?<!and )(?<!or )(?<!to )(?<!\+ )\b1 (?:" + "|".join(PLURALS) + r")\b"
                     r"|\b[a-z]+\(s\)|\([^()]*\([^()]*\s[^()]*\)\)")
# snake_case with at least two word parts (x86_64 is not a key, d_k is maths; gaussian_sigma_100 and test_loss are keys).
RAW_KEY = re.compile(r"(?<![\w/.-])[a-z][a-z0-9]+(?:_[a-z][a-z0-9]*)+(?:_[a-z0-9]+)*(?![\w/.(-])")
ALPHA_LABEL = re.compile(r"^\[?[A-Z][A-Za-z]{0,4}\+?\d{2}[a-z]?\]?$")
IMPORT_LINE = re.compile(r"^\s*(?:from\s+\S+\s+)?import\s|^\s*(?:#.*)?$")
PIPE_ROW = re.compile(r"\|\s*:?-{3,}:?\s*\||(^|\n)\s*\|[^|\n]*\|[^|\n]*\|")
DOLLARS = re.compile(r"(?<![\\$])\$(?=\S)[^$\n]*?(?<=\S)\$(?!\d)")
TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\\(?:frac|sqrt|sum|int|mathrm|mathbf|operatorname|begin|end|lvert|rvert|alpha|"
                 r"sigma|varepsilon|epsilon|theta|Theta|mapsto|top|cdot|le|ge|dot)\b")
PLAIN_MATHS = re.compile(r"[∑∫√ᵀ]|Σ_|\b[A-Za-z]_[A-Za-z0-9]\b(?!_)|[A-Za-z)]\^[A-Za-z0-9{(]|_\{|\^\{")
CODE_MATHS = re.compile(r"[∑∫√ᵀ]|\bsoftmax\(|\bexp\(|\\[a-z]+|[A-Za-z)]\^[A-Za-z0-9{(T]|\b[A-Za-z]_[A-Za-z0-9]\b")
PLAIN_XREF = re.compile(r"\(see (?:the )?[A-Z][\w-]*(?: [A-Z][\w-]*)*\)")
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception): ", re.M)
RAW_DICT = re.compile(r"^\s*\{\s*['\"0-9]", re.M)
INLINE_DICT = re.compile(r"\{'[^'{}]+': [^{}]*\}")  # a dict's repr inside a sentence ("ours: {'CNN': 0.9}")


def judge(page: str, facts: dict, html_root: Path | None = None, page_path: Path | None = None) -> list[Finding]:
    """Every finding on one page from the facts :data:`COLLECT_JS` returned."""
    if "error" in facts:
        return [Finding(page, "error-output", f"the page script failed: {facts['error']}")]
    out: list[Finding] = []

    def add(kind: str, detail: str) -> None:
        out.append(Finding(page, kind, " ".join(detail.split())[:160]))

    column = facts["columnWidth"]
    for t in facts["tables"]:
        if t["width"] > column + 2 and not t["scrollable"]:
            add("wide-table", f"{t['width']:.0f} px table in a {column:.0f} px column, no scroll container: {t['text']!r}")
    for entry in facts["texts"]:
        text = entry["text"]
        if PIPE_ROW.search(text):
            add("raw-table", f"pipe-table text: {_around(text, PIPE_ROW)!r}")
        for pattern in (DOLLARS, TEX):
            if pattern.search(text):
                add("raw-maths", f"TeX outside maths: {_around(text, pattern)!r}")
                break
        else:
            if PLAIN_MATHS.search(text):
                add("plain-maths", f"formula as plain text: {_around(text, PLAIN_MATHS)!r}")
        if WORDING.search(text):
            add("wording", f"count or bracket wording: {_around(text, WORDING)!r}")
        if RAW_KEY.search(text):
            add("raw-key", f"an identifier shown as text: {_around(text, RAW_KEY)!r}")
        if INLINE_DICT.search(text):
            add("raw-output", f"a raw Python dict in the text: {_around(text, INLINE_DICT)!r}")
        if PLAIN_XREF.search(entry["unlinked"]):
            add("plain-xref", f"cross-reference as text, not a link: {_around(entry['unlinked'], PLAIN_XREF)!r}")
    for text in facts["outputs"]:
        if PIPE_ROW.search(text):
            add("raw-table", f"pipe-table printed as text output: {_around(text, PIPE_ROW)!r}")
        if TRACEBACK.search(text):
            add("error-output", f"error in an output: {_around(text, TRACEBACK)!r}")
        if RAW_DICT.search(text):
            add("raw-output", f"a raw Python dict as output: {text.strip()[:80]!r}")
    for text in facts["mathErrors"]:
        add("raw-maths", f"maths MathJax could not typeset: {text!r}")
    for code in facts["inlineCode"]:
        if CODE_MATHS.search(code):
            add("plain-maths", f"formula as code: {code!r}")
    for img in facts["images"]:
        if img["display"] == "none":
            continue
        if not img["complete"] or img["naturalWidth"] == 0:
            add("image", f"image did not load: {img['src'][:80]}")
        elif img["width"] < MIN_IMAGE_SCALE * img["naturalWidth"]:
            add("image", f"image shown at {img['width']:.0f} of its {img['naturalWidth']} px "
                         f"({img['width'] / img['naturalWidth']:.0%} < {MIN_IMAGE_SCALE:.0%}): {img['src'][:60]}")
    for text in facts["errors"]:
        add("error-output", f"error or system message on the page: {text!r}")
    code, prose = facts["firstCode"], facts["firstProse"]
    if code is not None and code < facts["viewportHeight"] and (prose is None or code < prose):
        add("code-first", "the first screen shows code before any prose")
    for cell in facts["inputs"]:
        why = _plumbing(cell["text"], cell["tags"])
        if why:
            add("plumbing", f"{why} shown to the reader (hide it with a cell tag): {cell['text'].strip()[:60]!r}")
    odd = [label for label in facts["labels"] if ALPHA_LABEL.match(label)]
    if odd:
        add("citation-label", f"bibliography labels are codes, not author-year like the text: {', '.join(odd[:4])}")
    for text in facts["cutCode"]:
        add("cut-code", f"code lines cut off (the block scrolls sideways): {text!r}")
    if html_root is not None and page_path is not None:
        out += [Finding(page, "dead-link", d) for d in dead_links(facts["links"], page_path, html_root)]
    return out


def _plumbing(code: str, tags: list[str]) -> str | None:
    """Why a visible code cell is plumbing rather than something a reader needs, or None."""
    if {"parameters", "injected-parameters"} & set(tags):
        return "a papermill parameters cell"
    if "NBVAL_" in code:
        return "an nbval marker"
    if re.search(r"^\s*assert\s", code, re.M):
        return "a test assertion"
    if code.strip() and all(IMPORT_LINE.match(line) for line in code.splitlines()):
        return "an import-only cell"
    return None


def _around(text: str, pattern: re.Pattern) -> str:
    m = pattern.search(text)
    assert m is not None
    return text[max(0, m.start() - 25): m.end() + 25]


class _Ids(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


_ID_CACHE: dict[Path, set[str]] = {}


def _ids_of(path: Path) -> set[str]:
    if path not in _ID_CACHE:
        parser = _Ids()
        parser.feed(path.read_text(errors="replace"))
        _ID_CACHE[path] = parser.ids
    return _ID_CACHE[path]


def dead_links(links: Iterable[dict], page_path: Path, html_root: Path) -> list[str]:
    """Links of a page that point into the book (file URLs) at a missing file or anchor.

    Links to other sites cannot be followed offline; they are not judged. ``page_path`` is the page's file.
    """
    root = html_root.resolve()
    found = []
    for link in links:
        parts = urlsplit(link["href"])
        if parts.scheme != "file":
            continue
        target = Path(unquote(parts.path))
        if target.is_dir():
            target = target / "index.html"
        shown = link.get("raw") or link["href"]
        if not target.exists():
            where = target.relative_to(root) if target.is_relative_to(root) else target
            found.append(f"{shown!r} ({link['text']!r}) points to {where}, which does not exist")
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _ids_of(target):
            found.append(f"{shown!r} ({link['text']!r}): no anchor #{parts.fragment} in {target.name}")
    return found


def pages(html_root: Path) -> list[Path]:
    """Every HTML page of the book, index first (Sphinx's own folders left out)."""
    found = [p for p in html_root.rglob("*.html") if not SKIPPED_FOLDERS & set(p.relative_to(html_root).parts)]
    return sorted(found, key=lambda p: (p.name != "index.html", str(p.relative_to(html_root))))


def _which(names: Iterable[str], env: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    return next((found for name in names if (found := shutil.which(name))), None)


class Browser:
    """Headless Chromium through selenium with the system driver, at WIDTH x HEIGHT; a context manager."""

    def __init__(self, width: int = WIDTH, height: int = HEIGHT):
        self.width, self.height = width, height
        browser, driver = _which(BROWSERS, "ROBUSTODE_CHROMIUM"), _which(DRIVERS, "ROBUSTODE_CHROMEDRIVER")
        if not browser or not driver:
            raise CheckUnavailable("the browser check needs chromium and chromedriver: "
                                   "apt-get install -y chromium chromium-driver")
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError as err:
            raise CheckUnavailable("the browser check needs selenium: pip install -e '.[test]'") from err
        self._profile = tempfile.mkdtemp(prefix="robustode-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
        try:
            self.driver = webdriver.Chrome(service=Service(executable_path=driver), options=options)
        except Exception as err:  # selenium raises its own WebDriverException family
            shutil.rmtree(self._profile, ignore_errors=True)
            raise CheckUnavailable(f"chromium did not start ({browser}, {driver}): {str(err).splitlines()[0]}") from err
        self.driver.set_script_timeout(60)
        self.driver.set_page_load_timeout(60)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)

    def facts(self, path: Path) -> dict:
        """Load ``path`` at the window's size and return what :data:`COLLECT_JS` finds."""
        self.driver.set_window_size(self.width, self.height)
        self.driver.get(path.resolve().as_uri())
        facts = self.driver.execute_async_script(COLLECT_JS)
        facts["viewportHeight"] = min(facts.get("viewportHeight") or self.height, self.height)
        return facts

    def screenshot(self, target: Path) -> list[Path]:
        """The whole page at the window's width: the window is stretched to the page's height, and a page
        taller than :data:`MAX_SCREENSHOT_HEIGHT` is taken in parts (``target``, ``<stem>-2.png``, ...)."""
        height = int(self.driver.execute_script(
            "return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)"))
        target.parent.mkdir(parents=True, exist_ok=True)
        # The window's size includes some browser chrome even when headless: add what the page does not get.
        chrome = int(self.driver.execute_script("return window.outerHeight - window.innerHeight"))
        self.driver.set_window_size(self.width, min(height, MAX_SCREENSHOT_HEIGHT) + max(chrome, 0))
        step = int(self.driver.execute_script("return window.innerHeight")) or MAX_SCREENSHOT_HEIGHT
        taken = []
        for part, top in enumerate(range(0, height, step), start=1):
            self.driver.execute_script("window.scrollTo(0, arguments[0])", top)
            path = target if part == 1 else target.with_name(f"{target.stem}-{part}{target.suffix}")
            self.driver.save_screenshot(str(path))
            taken.append(path)
        self.driver.execute_script("window.scrollTo(0, 0)")
        self.driver.set_window_size(self.width, self.height)
        return taken


def check_pages(browser: Browser, paths: Iterable[Path], html_root: Path,
                screenshots: Path | None = None) -> Iterator[tuple[Path, list[Finding]]]:
    for path in paths:
        name = str(path.relative_to(html_root))
        facts = browser.facts(path)
        findings = judge(name, facts, html_root, path)
        if screenshots is not None:
            browser.screenshot(screenshots / (name.removesuffix(".html").replace("/", "__") + ".png"))
        yield path, findings


def run_check(html_root: Path, screenshots: Path | None, only: list[str] | None = None) -> tuple[int, list[Finding]]:
    """Check every page (or those whose path contains one of ``only``); returns (pages, findings)."""
    html_root = html_root.resolve()
    if not (html_root / "index.html").exists():
        raise CheckUnavailable(f"no built book at {html_root} (index.html missing): run `make book` first")
    chosen = [p for p in pages(html_root) if not only or any(o in str(p.relative_to(html_root)) for o in only)]
    if screenshots is not None and screenshots.exists():
        shutil.rmtree(screenshots)
    findings: list[Finding] = []
    with Browser() as browser:
        for _path, found in check_pages(browser, chosen, html_root, screenshots):
            findings += found
    return len(chosen), findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robustode.browser_check",
                                     description="Open every page of the built book in headless Chromium and report what "
                                                 "makes it hard to read (exit 1 on any finding).")
    parser.add_argument("html", nargs="?", default="_build/html", help="the built book (default: _build/html)")
    parser.add_argument("--screenshots", default="_build/screenshots",
                        help="folder for full-page screenshots at 1280 px (default: _build/screenshots; '' for none)")
    parser.add_argument("--only", nargs="+", metavar="TEXT", help="only pages whose path contains one of these")
    parser.add_argument("--allow", nargs="+", default=[], choices=KINDS, metavar="KIND",
                        help=f"finding kinds reported but not failed on ({', '.join(KINDS)})")
    parser.add_argument("--json", metavar="FILE", help="also write the findings as JSON")
    args = parser.parse_args(argv)
    tic = time.perf_counter()
    try:
        count, findings = run_check(Path(args.html), Path(args.screenshots) if args.screenshots else None, args.only)
    except CheckUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failing = [f for f in findings if f.kind not in args.allow]
    for f in findings:
        print(("allowed: " if f.kind in args.allow else "") + str(f))
    if args.json:
        Path(args.json).write_text(json.dumps([f.__dict__ for f in findings], indent=1))
    shots = f"; screenshots in {args.screenshots}" if args.screenshots else ""
    print(f"browser check: {plural(count, 'page')}, {plural(len(failing), 'finding')} in {time.perf_counter() - tic:.0f} s{shots}",
          file=sys.stderr)
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
