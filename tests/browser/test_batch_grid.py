"""batch.js alone in Chromium with a stand-in model: 10,000 items keep only the visible cards in
the DOM, item messages update them, scrolling brings the later cards in, and a finished card asks
for its picture when it is shown."""

from __future__ import annotations

from pathlib import Path

JS = (Path(__file__).resolve().parents[2] / "js" / "batch.js").read_text()
CSS = (Path(__file__).resolve().parents[2] / "js" / "batch.css").read_text()

PAGE = """<!doctype html><html><head><style>%s</style></head><body>
<div id="el" style="width:800px"></div>
<script type="module">
const source = %r;
const url = URL.createObjectURL(new Blob([source], {type: "text/javascript"}));
const widget = (await import(url)).default;
const total = 10000;
const state = {
  total, labels: Array.from({length: total}, (_, i) => `seed: ${i}`), batch_status: "running",
  completed: 0, failed: 0, cancelled: 0, running: 0, done_percent: 0, elapsed: 1, stopping: false,
  servers: [],
};
const handlers = {};
window.sent = [];
const model = {
  get: (k) => state[k],
  on: (name, fn) => { (handlers[name] ||= []).push(fn); },
  off: () => {},
  send: (m) => window.sent.push(m),
};
window.deliver = (msg, buffers = []) =>
  (handlers["msg:custom"] || []).forEach((fn) => fn(msg, buffers));
widget.render({model, el: document.getElementById("el")});
window.ready = true;
</script></body></html>"""


def test_ten_thousand_items_keep_only_visible_cards(chromium, tmp_path):
    page_file = tmp_path / "batch.html"
    page_file.write_text(PAGE % (CSS, JS))
    page = chromium.new_page(viewport={"width": 1000, "height": 900})
    try:
        page.goto(page_file.as_uri())
        page.wait_for_function("window.ready === true", timeout=30_000)
        assert page.evaluate("window.sent") == [{"type": "ready"}]
        page.wait_for_function(
            "document.querySelector('.cw-batch-scroll.cw-batch-virtual') !== null", timeout=10_000
        )
        page.wait_for_timeout(200)  # the row height is measured on the next frame
        cards = page.evaluate("document.querySelectorAll('.cw-batch-card').length")
        assert 0 < cards < 200, cards
        page.evaluate(
            "deliver({type: 'items', indexes: [0, 9999], statuses: ['completed', 'failed'],"
            " progress: [100, 0], errors: ['', 'boom']})"
        )
        first = page.locator(".cw-batch-card").first
        assert first.get_attribute("class") == "cw-batch-card cw-item-completed"
        page.evaluate(
            "const s = document.querySelector('.cw-batch-scroll'); s.scrollTop = s.scrollHeight"
        )
        page.wait_for_function(
            "[...document.querySelectorAll('.cw-batch-card-status')]"
            ".some((n) => n.textContent === '#9999 failed')",
            timeout=10_000,
        )
        cards = page.evaluate("document.querySelectorAll('.cw-batch-card').length")
        assert 0 < cards < 200, cards
        # finished cards ask for their pictures once, when shown: #0 first, #9999 after scrolling
        asked = page.evaluate("window.sent.filter((m) => m.type === 'thumbs')")
        assert asked == [{"type": "thumbs", "indexes": [0]}, {"type": "thumbs", "indexes": [9999]}]
        page.evaluate(
            "deliver({type: 'thumbs', indexes: [9999], mimes: ['image/png'], final: [true]},"
            " [new Uint8Array([137, 80, 78, 71])])"
        )
        shown = page.evaluate(
            "[...document.querySelectorAll('.cw-batch-card')]"
            ".filter((c) => c.textContent.includes('#9999'))"
            ".map((c) => !c.querySelector('img').hidden)"
        )
        assert shown == [True]
    finally:
        page.close()
