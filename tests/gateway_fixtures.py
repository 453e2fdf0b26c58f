"""Fixtures for everything behind the gateway: a copy of the knowledge base the tests may change, the real Rasa
and action servers answering from it, PostgreSQL databases, and gateway processes (`python -m connectors.serve`)
on free ports. Imported by conftest.py."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import httpx
import pytest

from bot.runner import APP_PYTHON, QUIET_ENV, RASA_PYTHON, REPO, Stack, StackError, free_port, start_stack, train_model

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CLERK_PASSWORD = "desk-pass-2026"
ALWAYS_OPEN = "mon-sun 00:00-24:00"


@dataclass
class KnowledgeCopy:
    corpus_dir: Path
    index_dir: Path

    @property
    def env(self) -> dict[str, str]:
        return {"GOVBOT_CORPUS_DIR": str(self.corpus_dir), "GOVBOT_INDEX_DIR": str(self.index_dir)}


@pytest.fixture(scope="session")
def kb_copy(tmp_path_factory: pytest.TempPathFactory) -> KnowledgeCopy:
    """The bundled knowledge base copied to a temporary folder (approving desk knowledge writes into it), indexed."""
    from retrieval import Settings, build_corpus_index

    root = tmp_path_factory.mktemp("kbcopy")
    corpus = root / "corpus"
    shutil.copytree(REPO / "knowledge" / "corpus", corpus)
    copy = KnowledgeCopy(corpus, root / "indexes")
    build_corpus_index(Settings(corpus_dir=corpus, index_dir=copy.index_dir))
    return copy


@pytest.fixture(scope="session")
def rasa_model() -> Path:
    if not RASA_PYTHON.exists():
        pytest.fail(".venv-rasa is missing: run `make setup` (make test does)")
    try:
        return train_model(lambda line: None)
    except StackError as exc:
        pytest.fail(f"no Rasa model: {exc}")


@pytest.fixture(scope="session")
def bot_stack(tmp_path_factory: pytest.TempPathFactory, kb_copy: KnowledgeCopy, rasa_model: Path) -> Iterator[Stack]:
    """Rasa + the action server, answering from `kb_copy` (so an approved candidate reaches the bot)."""
    with start_stack(tmp_path_factory.mktemp("gwstack"), rasa_model, extra_env=kb_copy.env) as stack:
        yield stack


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A throw-away PostgreSQL database on 127.0.0.1:5432; fails (never skips) if the server is down."""
    from sqlalchemy import create_engine, text

    name = f"govbot_t_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is needed (.ci/run starts it): {exc}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'govbot.db'}"


@dataclass
class GatewayProcess:
    """A real gateway process; `restart()` keeps its database and port."""

    port: int
    env: dict[str, str]
    log_path: Path
    proc: Optional[subprocess.Popen[bytes]] = None
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return self.env["GOVBOT_DATABASE_URL"]

    def start(self, timeout: float = 120.0) -> GatewayProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([str(APP_PYTHON), "-m", "connectors.serve", "--port", str(self.port)],
                                     cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.3)
        raise AssertionError(f"gateway not healthy after {timeout} s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        self.clients.clear()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        """As a crash would: no shutdown handlers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self) -> GatewayProcess:
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def client(self) -> httpx.Client:
        c = httpx.Client(base_url=self.url, timeout=60)
        self.clients.append(c)
        return c

    def create_clerk(self, username: str, role: str = "clerk", department: Optional[str] = None,
                     display_name: Optional[str] = None, password: str = CLERK_PASSWORD) -> dict[str, Any]:
        from connectors.auth import create_clerk
        from connectors.store import open_database

        engine, factory = open_database(self.database_url)
        try:
            return create_clerk(factory, username, password, role, department, display_name)
        finally:
            engine.dispose()

    def login(self, username: str, password: str = CLERK_PASSWORD) -> httpx.Client:
        """A logged-in desk client that sends the CSRF header on every request."""
        c = self.client()
        r = c.post("/api/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = r.json()["csrf"]
        return c


def gateway_env(database_url: str, stack: Optional[Stack], kb: KnowledgeCopy, **extra: str) -> dict[str, str]:
    env = {**os.environ, **QUIET_ENV, "PYTHONPATH": str(REPO), **kb.env,
           "GOVBOT_DATABASE_URL": database_url,
           "GOVBOT_RASA_URL": stack.rasa_url if stack else f"http://127.0.0.1:{free_port()}",
           "GOVBOT_RASA_TOKEN": stack.token if stack else "none",
           "GOVBOT_SECRET_KEY": secrets.token_urlsafe(16),
           "GOVBOT_OFFICE_HOURS": ALWAYS_OPEN,
           "GOVBOT_RASA_TIMEOUT": "30"}
    env.update(extra)
    return env


@contextlib.contextmanager
def run_gateway(folder: Path, database_url: str, stack: Optional[Stack], kb: KnowledgeCopy,
                **extra: str) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(free_port(), gateway_env(database_url, stack, kb, **extra), folder / "gateway.log")
    try:
        yield gw.start()
    finally:
        gw.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, bot_stack: Stack,
            kb_copy: KnowledgeCopy) -> Iterator[GatewayProcess]:
    """The gateway on SQLite and on PostgreSQL, each with an admin `lead`, clerks `wang` and `zhou` (all
    departments) and `li` (市公安局)."""
    folder = tmp_path_factory.mktemp(f"gw-{request.param}")
    with contextlib.ExitStack() as stack:
        url = sqlite_url(folder) if request.param == "sqlite" else stack.enter_context(postgres_database())
        gw = stack.enter_context(run_gateway(folder, url, bot_stack, kb_copy))
        gw.create_clerk("lead", role="admin", display_name="组长")
        gw.create_clerk("wang", display_name="王老师")
        gw.create_clerk("zhou", display_name="周老师")
        gw.create_clerk("li", display_name="李老师", department="市公安局")
        yield gw

