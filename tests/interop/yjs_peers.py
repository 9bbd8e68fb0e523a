"""Real Yjs peers for interop tests: unmodified y-webrtc in Node and in headless Chromium.

Each peer drives one y-webrtc ``WebrtcProvider`` on a Y.Doc whose shared type is
``doc.getText("text")``, through the commands of ``js/peer_core.js``. ``NodePeer`` runs
``js/ypeer.mjs`` (@roamhq/wrtc) and talks JSON lines over its stdin/stdout; ``BrowserPeer`` opens
the test page (``js/index.html`` + the esbuild bundle of ``js/browser_entry.js``) in Chromium
through Playwright. Both share the ``YjsPeer`` interface::

    peer = NodePeer(name="alice")
    await peer.start("room", "ws://127.0.0.1:4444")
    await peer.insert(0, "hi")
    await peer.wait_until("peers === 1 && text.length === 4", timeout=10)
    await peer.close()

Every peer uses ``iceServers: []``: run inside a loopback-only network namespace
(``scripts/loopback-netns``), or libwebrtc also tries the machine's LAN addresses.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import functools
import inspect
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Awaitable, Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from needs import require

__all__ = [
    "CHROMIUM_FLAGS",
    "JS",
    "NODE_MODULES",
    "REPO",
    "YWEBRTC_SERVER",
    "BrowserPeer",
    "BrowserPeerFactory",
    "JsPeerError",
    "NodePeer",
    "NodePeerFactory",
    "Predicate",
    "StaticServer",
    "YjsPeer",
    "build_test_page",
    "bundle",
    "chromium_binary",
    "in_loopback_namespace",
    "launch_chromium",
    "require",
    "require_chromium",
    "require_loopback_namespace",
    "require_node",
]

REPO = Path(__file__).resolve().parents[2]
JS = Path(__file__).resolve().parent / "js"
NODE_MODULES = REPO / "node_modules"
YWEBRTC_SERVER = NODE_MODULES / "y-webrtc" / "bin" / "server.js"

# Commands answer within this many seconds unless told otherwise (start waits for signaling).
COMMAND_TIMEOUT = 10.0
# Diagnostic lines kept per peer (stderr, console, non-JSON stdout) for failure reports.
DIAGNOSTIC_LINES = 200

# Chromium flags. The first three are needed (measured: without either WebRTC flag a page never
# links with a Node peer on loopback); the rest keep Chromium from reaching out or phoning home.
CHROMIUM_FLAGS = (
    "--no-sandbox",  # tests run as root
    "--allow-loopback-in-peer-connection",  # let libwebrtc use 127.0.0.1
    "--disable-features=WebRtcHideLocalIpsWithMdns",  # real addresses, no mDNS .local candidates
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--metrics-recording-only",
)
# Only with fake_microphone=True: a media permission makes Chromium expose its host candidates.
FAKE_MEDIA_FLAGS = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")

Predicate = str | Callable[[], bool | Awaitable[bool]]
"""What ``wait_until`` waits for: a JS expression evaluated inside the peer, where ``text`` (str),
``peers`` (open WebRTC connections), ``states`` (remote awareness states by client id),
``synced`` (y-webrtc's flag), ``doc`` and ``provider`` are defined; or a Python callable (sync
or async) returning a truth value, re-run after every event the peer reports."""


class JsPeerError(Exception):
    """A JS peer failed a command, or died; the message ends with its latest diagnostics."""


# Preconditions of the fixtures (conftest.py re-exports them).


def in_loopback_namespace() -> bool:
    """True when ``lo`` is the only network interface (as inside ``scripts/loopback-netns``)."""
    return {name for _, name in socket.if_nameindex()} == {"lo"}


def require_node() -> None:
    """node on PATH and ``npm ci`` done (node_modules/.package-lock.json)."""
    require(shutil.which("node"), "node is not installed")
    require(
        (NODE_MODULES / ".package-lock.json").exists() and YWEBRTC_SERVER.exists(),
        "node_modules missing: run `npm ci` (make test does)",
    )


def require_chromium() -> None:
    """Debian's chromium installed, and pip playwright importable."""
    require(chromium_binary(), "chromium missing: apt-get install -y chromium")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        require(False, "playwright missing: pip install -e '.[test]'")


def require_loopback_namespace() -> None:
    """Only ``lo`` exists, so libwebrtc cannot gather other addresses."""
    require(
        in_loopback_namespace(),
        "not in a loopback-only network namespace: run under scripts/loopback-netns (as root)",
    )


class NodePeerFactory(Protocol):
    """``node_peers``: ``await node_peers(count, room, signaling_url, password)``."""

    async def __call__(
        self,
        count: int = 1,
        room: str | None = None,
        signaling_url: str | None = None,
        password: str | None = None,
        **start_options: Any,
    ) -> list[NodePeer]: ...


class BrowserPeerFactory(Protocol):
    """``browser_peers``: as ``NodePeerFactory``, plus ``fake_microphone``."""

    async def __call__(
        self,
        count: int = 1,
        room: str | None = None,
        signaling_url: str | None = None,
        password: str | None = None,
        *,
        fake_microphone: bool = False,
        **start_options: Any,
    ) -> list[BrowserPeer]: ...


def chromium_binary() -> Path | None:
    """The real Chromium binary of Debian's ``chromium`` package, or None if not installed.

    ``/usr/bin/chromium`` is a launcher script that may print shell noise; call what it execs.
    """
    if not Path("/usr/bin/chromium").exists():
        return None
    real = Path("/usr/lib/chromium/chromium")
    return real if real.exists() else Path("/usr/bin/chromium")


def bundle(entry: Path, outfile: Path) -> Path:
    """Bundle a browser script and what it imports from node_modules into one IIFE with esbuild
    (as ``make browser-example`` does); returns ``outfile``."""
    outfile.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            str(NODE_MODULES / ".bin" / "esbuild"),
            str(entry),
            "--bundle",
            "--format=iife",
            "--platform=browser",
            "--log-level=warning",
            f"--outfile={outfile}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"esbuild {entry.name} failed ({result.returncode}):\n{result.stderr}")
    return outfile


def build_test_page(out_dir: Path) -> Path:
    """The browser peer's page: ``js/index.html`` and the bundle of ``js/browser_entry.js``
    (yjs, y-webrtc from node_modules) in ``out_dir``; returns ``out_dir``."""
    bundle(JS / "browser_entry.js", out_dir / "bundle.js")
    shutil.copy(JS / "index.html", out_dir / "index.html")
    return out_dir


async def launch_chromium(
    playwright: Any, user_data_dir: Path, *, fake_microphone: bool = False
) -> Any:
    """Headless Chromium (``chromium_binary()``) with ``CHROMIUM_FLAGS`` and a profile in
    ``user_data_dir``: a Playwright ``BrowserContext``; close it when done."""
    chromium = chromium_binary()
    if chromium is None:
        raise JsPeerError("chromium is not installed")
    flags = list(CHROMIUM_FLAGS)
    if fake_microphone:
        flags += FAKE_MEDIA_FLAGS
    return await playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=str(chromium), headless=True, args=flags
    )


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class StaticServer:
    """Serves a folder over HTTP on 127.0.0.1 (a free port) from a thread::

    with StaticServer(folder) as server:
        server.url  # "http://127.0.0.1:PORT/"
    """

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="static-http")

    def __enter__(self) -> StaticServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class YjsPeer(abc.ABC):
    """One real y-webrtc peer; the interface ``NodePeer`` and ``BrowserPeer`` share.

    A peer opens one provider in its life: ``start`` once, then the other calls, then ``close``.
    ``events`` holds every event the peer reported, in order (``{"event": "peers", ...}``,
    ``"connect"``, ``"synced"``, ``"update"``, ``"awareness"``, ``"unhandled-rejection"``, ...).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.events: list[dict[str, Any]] = []
        self.client_id: int | None = None  # the Y.Doc's clientID, once started
        self.peer_id: str | None = None  # y-webrtc's peer id in the room, once started
        self._diagnostics: collections.deque[str] = collections.deque(maxlen=DIAGNOSTIC_LINES)
        self._changed = asyncio.Event()
        self._dead: str | None = None  # why the peer can no longer answer
        self._close_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    async def start(
        self,
        room: str,
        signaling_url: str,
        password: str | None = None,
        *,
        max_conns: int = 20,
        timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        """Launch the peer and open a ``WebrtcProvider(room, doc, {signaling: [signaling_url],
        password, maxConns: max_conns})``; return once the signaling WebSocket is open.

        ``max_conns`` is fixed (y-webrtc's default is random, 20 to 34) so runs repeat.
        """
        await self._launch()
        result = await self._call(
            "start",
            {
                "room": room,
                "signaling": signaling_url,
                "password": password,
                "maxConns": max_conns,
                "timeoutMs": int(timeout * 1000),
            },
            timeout=timeout + COMMAND_TIMEOUT,
        )
        self.client_id = result["clientId"]
        self.peer_id = result["peerId"]

    async def insert(self, index: int, text: str) -> None:
        """``doc.getText("text").insert(index, text)`` in the peer."""
        await self._call("insert", {"index": index, "text": text})

    async def text(self) -> str:
        """The peer's ``doc.getText("text").toString()``."""
        result: str = await self._call("text")
        return result

    async def set_awareness(self, state: dict[str, Any]) -> None:
        """``provider.awareness.setLocalState(state)`` in the peer."""
        await self._call("setAwareness", {"state": state})

    async def awareness_states(self) -> dict[int, dict[str, Any]]:
        """The awareness states the peer holds for others (its own left out), by client id."""
        states: dict[str, dict[str, Any]] = await self._call("awarenessStates")
        return {int(client_id): state for client_id, state in states.items()}

    async def peer_count(self) -> int:
        """How many of the provider's WebRTC connections are open (simple-peer ``connect``)."""
        result: int = await self._call("peerCount")
        return result

    async def wait_until(self, predicate: Predicate, timeout: float = COMMAND_TIMEOUT) -> None:
        """Return once ``predicate`` holds (see ``Predicate``); raise ``TimeoutError`` naming it
        and the peer's state after ``timeout`` seconds, ``JsPeerError`` if the peer dies."""
        if isinstance(predicate, str):
            result = await self._call(
                "waitUntil",
                {"predicate": predicate, "timeoutMs": int(timeout * 1000)},
                timeout=timeout + COMMAND_TIMEOUT,
            )
            if result is not True:
                raise TimeoutError(f"{self.name}: {result}")
            return
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed = self._changed
                    outcome = predicate()
                    if inspect.isawaitable(outcome):
                        outcome = await outcome
                    if outcome:
                        return
                    await changed.wait()
                    self._raise_if_dead()
        except TimeoutError:
            raise TimeoutError(f"{self.name}: {predicate!r} not true within {timeout} s") from None

    async def close(self) -> None:
        """Destroy the provider and stop the peer's process. Idempotent: a second call awaits
        the first."""
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close())
        await asyncio.shield(self._close_task)

    def diagnostics(self) -> str:
        """The peer's latest stderr / console lines, for failure reports."""
        return "\n".join(self._diagnostics)

    def report(self) -> str:
        """Diagnostics and every event, as text (the fixtures print it at teardown, so a failing
        test shows it)."""
        events = "\n".join(json.dumps(event) for event in self.events)
        return f"--- {self!r} diagnostics\n{self.diagnostics()}\n--- {self!r} events\n{events}"

    # For subclasses.

    def _event_received(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _raise_if_dead(self) -> None:
        if self._dead is not None:
            raise JsPeerError(f"{self.name}: {self._dead}\n{self._tail()}")

    def _tail(self, lines: int = 20) -> str:
        return "\n".join(list(self._diagnostics)[-lines:])

    @abc.abstractmethod
    async def _launch(self) -> None:
        """Start the process and make it ready for ``_call``."""

    @abc.abstractmethod
    async def _call(
        self, cmd: str, args: dict[str, Any] | None = None, timeout: float = COMMAND_TIMEOUT
    ) -> Any:
        """Run one peer_core.js command; its result, or ``JsPeerError``."""

    @abc.abstractmethod
    async def _close(self) -> None:
        """Destroy the provider, stop the process, await every task."""


class NodePeer(YjsPeer):
    """A y-webrtc peer in Node (``js/ypeer.mjs``, @roamhq/wrtc), one process per peer."""

    def __init__(self, name: str = "node", *, node: str = "node") -> None:
        super().__init__(name)
        self._node = node
        self._process: asyncio.subprocess.Process | None = None
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._readers: list[asyncio.Task[None]] = []

    @property
    def returncode(self) -> int | None:
        """The Node process's exit status once it has exited, else None."""
        return None if self._process is None else self._process.returncode

    async def _launch(self) -> None:
        if self._process is not None:
            raise JsPeerError(f"{self.name}: already started")
        self._process = await asyncio.create_subprocess_exec(
            self._node,
            str(JS / "ypeer.mjs"),
            "--name",
            self.name,
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=1 << 24,  # text() of a large document is one line
        )
        assert self._process.stdout is not None
        assert self._process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read_stdout(self._process), name=f"{self.name}-stdout"),
            asyncio.create_task(self._read_stderr(self._process.stderr), name=f"{self.name}-err"),
        ]

    async def _read_stdout(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            try:
                message = json.loads(line)
            except ValueError:
                self._diagnostics.append(f"stdout: {line}")
                continue
            if "id" in message:
                future = self._replies.pop(message["id"], None)
                if future is not None and not future.done():
                    if message.get("ok"):
                        future.set_result(message.get("result"))
                    else:
                        future.set_exception(
                            JsPeerError(f"{self.name}: {message.get('error')}\n{self._tail()}")
                        )
            else:
                self._event_received(message)
        code = await process.wait()
        self._dead = f"node exited with status {code}"
        for future in self._replies.values():
            if not future.done():
                future.set_exception(JsPeerError(f"{self.name}: {self._dead}\n{self._tail()}"))
        self._replies.clear()
        self._notify()

    async def _read_stderr(self, stderr: asyncio.StreamReader) -> None:
        async for raw in stderr:
            self._diagnostics.append(raw.decode(errors="replace").rstrip("\n"))

    async def _call(
        self, cmd: str, args: dict[str, Any] | None = None, timeout: float = COMMAND_TIMEOUT
    ) -> Any:
        if self._process is None or self._process.stdin is None:
            raise JsPeerError(f"{self.name}: not started")
        self._raise_if_dead()
        message_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[message_id] = future
        line = json.dumps({"id": message_id, "cmd": cmd, "args": args or {}}) + "\n"
        try:
            self._process.stdin.write(line.encode())
            await self._process.stdin.drain()
            async with asyncio.timeout(timeout):
                return await future
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise JsPeerError(f"{self.name}: {cmd}: stdin closed\n{self._tail()}") from exc
        except TimeoutError:
            raise TimeoutError(f"{self.name}: no reply to {cmd} within {timeout} s") from None
        finally:
            self._replies.pop(message_id, None)

    async def _close(self) -> None:
        process = self._process
        if process is None:
            return
        if process.returncode is None and self._dead is None:
            with contextlib.suppress(JsPeerError, TimeoutError):
                await self._call("close", timeout=5.0)
        if process.stdin is not None:
            process.stdin.close()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await process.stdin.wait_closed()
        try:
            async with asyncio.timeout(5.0):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
        for reader in self._readers:
            try:
                async with asyncio.timeout(5.0):
                    await reader
            except TimeoutError:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader


class BrowserPeer(YjsPeer):
    """A y-webrtc peer in headless Chromium (Debian's, through Playwright), one browser process
    per peer, with a fresh profile.

    ``page_url`` serves the test page (``build_test_page`` + ``StaticServer``). In a
    loopback-only namespace Chromium exposes no ICE candidate at all; it still links with Node and
    Python peers (they learn its address from its checks), but two BrowserPeers reach each other
    only with ``fake_microphone=True``, where the page takes a fake microphone first and Chromium
    then exposes its 127.0.0.1 candidates.
    """

    def __init__(
        self,
        page_url: str,
        name: str = "browser",
        *,
        user_data_dir: Path | None = None,
        fake_microphone: bool = False,
    ) -> None:
        super().__init__(name)
        self._page_url = page_url
        self._user_data_dir = user_data_dir
        self._own_user_data_dir = False
        self._fake_microphone = fake_microphone
        self._playwright: Any = None
        self._context: Any = None
        self._page: Any = None

    @property
    def page(self) -> Any:
        """The Playwright ``Page`` (for what the common interface does not cover)."""
        return self._page

    async def _launch(self) -> None:
        from playwright.async_api import async_playwright

        if self._playwright is not None:
            raise JsPeerError(f"{self.name}: already started")
        if self._user_data_dir is None:
            self._user_data_dir = Path(tempfile.mkdtemp(prefix="crdtsync-chromium-"))
            self._own_user_data_dir = True
        self._playwright = await async_playwright().start()
        self._context = await launch_chromium(
            self._playwright, self._user_data_dir, fake_microphone=self._fake_microphone
        )
        pages = self._context.pages
        self._page = pages[0] if pages else await self._context.new_page()
        log = self._diagnostics.append
        self._page.on("console", lambda message: log(f"console: {message.text}"))
        self._page.on("pageerror", lambda error: log(f"pageerror: {error}"))
        self._page.on("crash", self._crashed)
        await self._page.expose_function("crdtsyncEvent", self._event_received)
        await self._page.goto(self._page_url)
        await self._page.wait_for_function("window.ypeerReady === true", timeout=10_000)
        if self._fake_microphone:
            await self._call("takeMicrophone")

    def _crashed(self, _page: Any) -> None:
        self._dead = "page crashed"
        self._notify()

    async def _call(
        self, cmd: str, args: dict[str, Any] | None = None, timeout: float = COMMAND_TIMEOUT
    ) -> Any:
        from playwright.async_api import Error as PlaywrightError

        if self._page is None:
            raise JsPeerError(f"{self.name}: not started")
        self._raise_if_dead()
        try:
            async with asyncio.timeout(timeout):
                return await self._page.evaluate(
                    "([cmd, args]) => window.ypeer.call(cmd, args)", [cmd, args or {}]
                )
        except PlaywrightError as exc:
            raise JsPeerError(f"{self.name}: {cmd}: {exc.message}\n{self._tail()}") from exc
        except TimeoutError:
            raise TimeoutError(f"{self.name}: no reply to {cmd} within {timeout} s") from None

    async def _close(self) -> None:
        try:
            if self._page is not None and self._dead is None:
                with contextlib.suppress(JsPeerError, TimeoutError):
                    await self._call("close", timeout=5.0)
            if self._context is not None:
                await self._context.close()
            if self._playwright is not None:
                await self._playwright.stop()
        finally:
            self._dead = self._dead or "closed"
            if self._own_user_data_dir and self._user_data_dir is not None:
                shutil.rmtree(self._user_data_dir, ignore_errors=True)
