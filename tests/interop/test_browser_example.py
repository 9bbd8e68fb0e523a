"""examples/browser, the shared editor page, built as `make browser-example` builds it and opened
in Chromium next to a Node y-webrtc peer: typing reaches the peer, the peer's edits reach the
textarea without moving the caret off the text it was in."""

from __future__ import annotations

import shutil
from pathlib import Path

from yjs_peers import REPO, NodePeerFactory, StaticServer, bundle, launch_chromium, require_chromium

EXAMPLE = REPO / "examples" / "browser"
TIMEOUT_MS = 20_000


def build_example(folder: Path) -> Path:
    folder.mkdir()
    shutil.copy(EXAMPLE / "index.html", folder / "index.html")
    bundle(EXAMPLE / "editor.js", folder / "dist" / "editor.js")
    return folder


async def test_the_editor_page_shares_its_text_with_a_node_peer(
    ywebrtc_server: str, node_peers: NodePeerFactory, tmp_path: Path
) -> None:
    require_chromium()
    from playwright.async_api import async_playwright

    (node,) = await node_peers(1, "example-notes", ywebrtc_server)
    await node.insert(0, "from node\n")
    with StaticServer(build_example(tmp_path / "site")) as site:
        async with async_playwright() as playwright:
            context = await launch_chromium(playwright, tmp_path / "profile")
            try:
                page = await context.new_page()
                await page.goto(f"{site.url}?room=example-notes&signaling={ywebrtc_server}")
                area = page.locator("#text")
                await page.wait_for_function(
                    "document.getElementById('text').value === 'from node\\n'"
                    " && document.getElementById('status').dataset.peers === '1'",
                    timeout=TIMEOUT_MS,
                )
                assert "1 peer" in await page.locator("#status").inner_text()

                await area.press("Control+End")
                await area.press_sequentially("typed")
                await node.wait_until("text === 'from node\\ntyped'", timeout=TIMEOUT_MS / 1000)

                # The caret sits after "typed"; an insert before it shifts it, one after does not.
                await node.insert(0, ">> ")
                await node.insert(len(">> from node\ntyped"), "!")
                await page.wait_for_function(
                    "document.getElementById('text').value === '>> from node\\ntyped!'",
                    timeout=TIMEOUT_MS,
                )
                caret = await area.evaluate("area => [area.selectionStart, area.selectionEnd]")
                assert caret == [len(">> from node\ntyped")] * 2

                await area.press("Backspace")
                await node.wait_until("text === '>> from node\\ntype!'", timeout=TIMEOUT_MS / 1000)
            finally:
                await context.close()
