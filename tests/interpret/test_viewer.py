"""The HTML attention viewer: self-contained (no external scripts, styles or fonts), valid HTML, every layer's maps
embedded and decoding back to the probabilities within the uint8 quantisation error, usable at 1,024 tokens; and,
where a Chromium is installed, the page opened in it shows every layer."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from lmstack.interpret.attention import collect_attention
from lmstack.interpret.head_stats import head_statistics
from lmstack.interpret.viewer import SCALE, decode_layer, write_viewer
from lmstack.model import build_model, preset
from lmstack.text.tokenizer import train_bpe

TEXT = ["The river town of Kell trades salt and amber. 凯尔河镇以盐和琥珀贸易为生。", "hello world, 你好，世界！"] * 20
ZH = "凯尔河镇以盐和琥珀贸易为生。Kell trades amber. </script><script>alert(1)</script>"


class Page(HTMLParser):
    """Every element with its attributes, and each <script>'s text."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[tuple[dict, str]] = []
        self._in: dict | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in = dict(attrs)
            self.scripts.append((self._in, ""))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in = None

    def handle_data(self, data):
        if self._in is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(TEXT, vocab_size=300)


def run_for(tokenizer, text: str, block_size: int = 128):
    torch.manual_seed(0)
    model = build_model(preset("llama-tiny", vocab_size=tokenizer.vocab_size, block_size=block_size, n_layer=3))
    return collect_attention(model.eval(), tokenizer, text, truncate=True)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def test_the_page_is_self_contained_and_holds_every_layer(tokenizer, tmp_path):
    run = run_for(tokenizer, ZH)
    path = write_viewer(run, head_statistics(run.maps, run.tokens.ids, run.tokens.words), tmp_path / "v.html")
    text = path.read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in text and "http://" not in text and "https://" not in text
    page = parse(path)
    assert not [t for t, a in page.tags if t == "link" or "src" in a or "href" in a]  # nothing is fetched
    L, H, T = run.shape
    # The text's own "</script>" cannot end the data early: exactly the meta, L layers and the page's script.
    assert len(page.scripts) == L + 2
    meta = json.loads(next(s for a, s in page.scripts if a.get("id") == "meta"))
    assert (meta["layers"], meta["heads"], meta["tokens"]) == (L, H, T)
    assert "".join(meta["pieces"]) == ZH and "凯" in meta["labels"]
    blobs = {a["id"]: s for a, s in page.scripts if a.get("id", "").startswith("layer-")}
    assert sorted(blobs) == [f"layer-{layer}" for layer in range(L)]
    for layer in range(L):
        probs = decode_layer(blobs[f"layer-{layer}"].strip(), H, T)
        assert np.abs(probs - run.maps[layer]).max() <= 0.5 / SCALE + 1e-6


def test_a_1024_token_page_stays_small(tokenizer, tmp_path):
    run = run_for(tokenizer, TEXT[0] * 40, block_size=1024)
    assert run.shape[2] == 1024 and run.truncated > 0
    path = write_viewer(run, [], tmp_path / "v.html")
    size = path.stat().st_size
    raw = run.maps.size  # one byte per probability, uncompressed
    assert size < raw, (size, raw)  # compressed: a 3 x 4 x 1024^2 map set in less than its uint8 bytes
    page = parse(path)
    assert len([a for a, _ in page.scripts if a.get("id", "").startswith("layer-")]) == run.shape[0]


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            path = p.chromium.executable_path
        return path if Path(path).exists() else None
    except Exception:  # no playwright, or no browser it downloaded
        return None


BROWSER = _browser()


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium (chromium / google-chrome / playwright's) here")
def test_the_page_opens_in_chromium_and_shows_every_layer(tokenizer, tmp_path):
    from playwright.sync_api import sync_playwright

    run = run_for(tokenizer, TEXT[0] * 40, block_size=1024)
    path = write_viewer(run, head_statistics(run.maps, run.tokens.ids, run.tokens.words), tmp_path / "v.html")
    L, H, T = run.shape
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=BROWSER, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            assert page.locator("#tokens span").count() == T
            for layer in range(L):
                page.click(f"#layer-btn-{layer}")
                page.wait_for_selector(f'#layer-btn-{layer}[data-loaded="1"]')
                assert page.locator("#thumbs canvas").count() == H
            assert page.evaluate("document.body.dataset.loadedLayers") == str(L)
            page.hover("#tokens span >> nth=10")
            assert "query #10" in page.text_content("#info")
            assert not errors, errors
        finally:
            browser.close()


NODE = shutil.which("node")
# The page's own decoding (base64 -> DecompressionStream("deflate") -> bytes), run by Node on one blob.
DECODE_JS = """
const text = require("fs").readFileSync(0, "utf8").trim();
(async () => {
  const raw = Uint8Array.from(atob(text), c => c.charCodeAt(0));
  const stream = new Blob([raw]).stream().pipeThrough(new DecompressionStream("deflate"));
  const data = new Uint8Array(await new Response(stream).arrayBuffer());
  process.stdout.write(Buffer.from(data).toString("hex"));
})();
"""


@pytest.mark.skipif(NODE is None, reason="no node here to run the page's decoding")
def test_the_page_script_parses_and_its_decoding_gives_the_quantised_maps(tokenizer, tmp_path):
    import subprocess

    run = run_for(tokenizer, ZH)
    page = parse(write_viewer(run, [], tmp_path / "v.html"))
    script = next(s for a, s in page.scripts if not a)
    (tmp_path / "page.js").write_text(script, encoding="utf-8")
    subprocess.run([NODE, "--check", str(tmp_path / "page.js")], check=True)
    blob = next(s for a, s in page.scripts if a.get("id") == "layer-1")
    out = subprocess.run([NODE, "-e", DECODE_JS], input=blob, capture_output=True, text=True, check=True).stdout
    _, H, T = run.shape
    decoded = np.frombuffer(bytes.fromhex(out), dtype=np.uint8).reshape(H, T, T)
    assert np.array_equal(decoded, np.rint(run.maps[1] * SCALE).astype(np.uint8))
