"""A headless Chromium driven over the DevTools protocol (``--remote-debugging-pipe``), with no
dependency beyond the standard library: open a page, list the requests it made, measure
elements, and take screenshots of what a person would see.

Chromium reads protocol messages from fd 3 and writes to fd 4, each message a JSON object
terminated by a NUL byte.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    override = os.environ.get("BENCH_CHROMIUM")
    if override:
        return override
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


class Browser:
    """One headless Chromium with a fresh profile; use as a context manager."""

    def __init__(self, binary: str, width: int = 1400, height: int = 1000, timeout: float = 60.0) -> None:
        self.binary, self.width, self.height, self.timeout = binary, width, height, timeout
        self._id = 0
        self._buffer = b""
        self.pid: int | None = None
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Browser:
        self.profile = tempfile.mkdtemp(prefix="bench-chromium-")
        to_chrome_r, self._out = os.pipe()
        self._in, from_chrome_w = os.pipe()
        args = [self.binary, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={self.profile}",
                "--remote-debugging-pipe", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
                f"--window-size={self.width},{self.height}", "about:blank"]
        # posix_spawn puts the pipe ends on the child's fds 3 and 4 without running Python in the
        # child (safe with the threads torch starts); stdio goes to /dev/null
        actions = [(os.POSIX_SPAWN_DUP2, to_chrome_r, 3), (os.POSIX_SPAWN_DUP2, from_chrome_w, 4)]
        actions += [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
        try:
            self.pid = os.posix_spawnp(self.binary, args, dict(os.environ), file_actions=actions)
        finally:
            os.close(to_chrome_r)
            os.close(from_chrome_w)
        try:
            target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Network", "Runtime"):
                self.send(f"{domain}.enable", session=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        deadline = time.monotonic() + 10
        while self._alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._alive():
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        for fd in (self._in, self._out):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    def _alive(self) -> bool:
        if self.pid is None:
            return False
        if os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            return True
        self.pid = None
        return False

    # -- protocol ---------------------------------------------------------------------------
    def send(self, method: str, params: dict[str, Any] | None = None, session: bool = False) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline or not self._alive():
                raise RuntimeError("chromium stopped answering")
            if not select.select([self._in], [], [], 0.5)[0]:
                continue
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed its pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def wait_for(self, method: str) -> dict[str, Any]:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read()
            if event.get("method") == method:
                return event
            self.events.append(event)

    # -- pages ------------------------------------------------------------------------------
    def open(self, path: Path) -> None:
        self.requests: list[str] = []
        self.send("Page.navigate", {"url": path.resolve().as_uri()}, session=True)
        self.wait_for("Page.loadEventFired")
        self.requests = [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                           session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, clip: dict[str, float] | None = None) -> bytes:
        """PNG bytes of the page (the whole page, or the ``clip`` rectangle in page pixels)."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": True}
        if clip:
            params["clip"] = {**clip, "scale": 1}
        return base64.b64decode(self.send("Page.captureScreenshot", params, session=True)["data"])
