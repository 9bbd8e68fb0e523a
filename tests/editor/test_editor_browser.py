"""The Python editor and CodeMirror 6 with y-codemirror.next (headless Chromium) in one y-webrtc
room: each shows the other's text and cursor. Screenshots of both are kept as artifacts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import ModuleType

import pycrdt
from editor_harness import until
from yjs_peers import (
    REPO,
    StaticServer,
    bundle,
    launch_chromium,
    require_chromium,
    require_loopback_namespace,
    require_node,
)

from crdtsync import Peer, SignalingServer

PAGE = REPO / "examples" / "editor_browser"
TIMEOUT_MS = 20_000
# Where the screenshots go: $CRDTSYNC_ARTIFACTS if set (CI uploads it), else the test's tmp dir.
ARTIFACTS = os.environ.get("CRDTSYNC_ARTIFACTS")

CARET_OF_ALICE = """() => {
  const { Y, ydoc, provider } = window.sharedEditor
  for (const state of provider.awareness.getStates().values()) {
    if (state.user?.name === 'alice' && state.cursor) {
      const head = Y.createRelativePositionFromJSON(state.cursor.head)
      return Y.createAbsolutePositionFromRelativePosition(head, ydoc)?.index ?? null
    }
  }
  return null
}"""


def build_page(folder: Path) -> Path:
    folder.mkdir()
    shutil.copy(PAGE / "index.html", folder / "index.html")
    bundle(PAGE / "editor.js", folder / "dist" / "editor.js")
    return folder


async def test_python_editor_and_codemirror_show_each_others_text_and_cursors(
    editor: ModuleType, tmp_path: Path
) -> None:
    require_node()
    require_chromium()
    require_loopback_namespace()
    from playwright.async_api import async_playwright

    artifacts = Path(ARTIFACTS) if ARTIFACTS else tmp_path
    artifacts.mkdir(parents=True, exist_ok=True)
    async with SignalingServer(host="127.0.0.1", port=0) as server:
        peer = Peer(
            pycrdt.Doc(),
            room="codemirror",
            signaling=server.url,
            dialect="y-webrtc",
            host_addresses=("127.0.0.1",),
        )
        async with peer, async_playwright() as playwright:
            with StaticServer(build_page(tmp_path / "site")) as site:
                context = await launch_chromium(playwright, tmp_path / "profile")
                try:
                    page = await context.new_page()
                    await page.goto(f"{site.url}?room=codemirror&signaling={server.url}&name=carol")
                    await peer.wait_for_peers(1, timeout=TIMEOUT_MS / 1000)
                    app = editor.EditorApp(peer, "alice")
                    async with app.run_test(size=(80, 12)) as pilot:
                        await pilot.press(*"from python")
                        await page.wait_for_function(
                            "window.sharedEditor.ytext.toString() === 'from python'",
                            timeout=TIMEOUT_MS,
                        )
                        await page.click(".cm-content")
                        await page.keyboard.press("End")
                        await page.keyboard.type(" and browser")
                        expected = "from python and browser"
                        await until(pilot, lambda: app.editor.text == expected, "browser's text")
                        await until(
                            pilot,
                            lambda: (
                                [(c.name, c.head) for c in app.editor.remote]
                                == [("carol", len(expected))]
                            ),
                            "the browser's cursor at the end of the text",
                        )
                        assert app.editor.cursor_location == (0, len("from python"))  # kept
                        await pilot.press("end", *["left"] * len(" and browser"))  # back again
                        await page.wait_for_function(
                            f"({CARET_OF_ALICE})() === {len('from python')}", timeout=TIMEOUT_MS
                        )
                        await page.wait_for_selector(
                            ".cm-ySelectionInfo:text('alice')", timeout=TIMEOUT_MS
                        )
                        assert "carol" in app.status()
                        await page.screenshot(path=str(artifacts / "codemirror-with-python.png"))
                        app.save_screenshot("python-with-codemirror.svg", str(artifacts))
                finally:
                    await context.close()
