"""Browser scenarios as child processes: a Node script (tests/browser/*.mjs, playwright-core driving Debian's
chromium) that prints `STEP` or `STEP {json}` lines the pytest side waits for while it plays the other peer."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import pytest

BROWSER = Path(__file__).resolve().parent / "browser"


def require_browser() -> None:
    missing = [name for name in ("node", "chromium") if shutil.which(name) is None]
    if not (BROWSER / "node_modules" / "playwright-core").is_dir():
        missing.append("tests/browser/node_modules/playwright-core")
    if missing:
        pytest.fail(f"browser test needs {', '.join(missing)}: run `make browser`")


class Scenario:
    """A node scenario script as a child process; its stdout lines arrive on a queue."""

    def __init__(self, script: str, args: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(["node", str(BROWSER / script), json.dumps(args, ensure_ascii=False)],
                                     cwd=BROWSER, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[Optional[str]] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr.append), daemon=True).start()

    @staticmethod
    def _read(stream: Any, put: Callable[[Optional[str]], None]) -> None:
        for line in stream:
            put(line.rstrip("\n"))
        put(None)

    def expect(self, prefix: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail(f"no {prefix!r} from the scenario within {timeout:.0f} s")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(10)
                self.fail(f"the scenario ended (exit {self.proc.returncode}) before {prefix!r}")
            elif line == prefix:
                return None
            elif line.startswith(prefix + " "):
                return json.loads(line[len(prefix) + 1:])

    def finish(self) -> None:
        self.proc.wait(60)
        if self.proc.returncode != 0:
            self.fail(f"the scenario exited with {self.proc.returncode}")

    def fail(self, message: str) -> None:
        self.close()
        pytest.fail(f"{message}\n--- scenario log ---\n" + "\n".join(s for s in self.stderr[-60:] if s))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
