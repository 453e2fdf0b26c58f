"""Train the Rasa model only when its inputs changed; print the model path.

    python -m bot.train [--force] [--quiet]      (any of our venvs; Rasa itself runs from .venv-rasa)

1. regenerates bot/generated/ from the knowledge base (files are rewritten only when their content changes);
2. hashes the inputs: config.yml, bot/domain.yml, bot/data/**, bot/generated/**, nlu/*.py and the Rasa version;
3. if $GOVBOT_CACHE_DIR/rasa-models/<hash>.tar.gz (default ~/.cache/govbot) exists, prints it; otherwise runs
   `rasa train` (telemetry off, offline) into a temporary file, moves it there atomically and prints it.
The last line of stdout is always the model path.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RASA = REPO / ".venv-rasa" / "bin" / "rasa"
if str(REPO) not in sys.path:  # run as a script: python bot/train.py
    sys.path.insert(0, str(REPO))
KEEP = 5  # cached models kept (newest first)


def cache_dir() -> Path:
    return Path(os.environ.get("GOVBOT_CACHE_DIR", Path.home() / ".cache" / "govbot")) / "rasa-models"


def input_files(repo: Path = REPO) -> list[Path]:
    files = [repo / "config.yml", repo / "bot" / "domain.yml"]
    for folder in (repo / "bot" / "data", repo / "bot" / "generated"):
        files += sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    files += sorted((repo / "nlu").glob("*.py"))
    return files


def rasa_env(repo: Path = REPO) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(repo), "RASA_TELEMETRY_ENABLED": "false", "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
                "PYTHONWARNINGS": "ignore",
                # Rasa's training cache: out of the checkout (our components fingerprint the files they read)
                "RASA_CACHE_DIRECTORY": str(cache_dir().parent / "rasa-cache")})
    return env


def rasa_version() -> str:
    meta = list((REPO / ".venv-rasa").glob("lib/python3*/site-packages/rasa-*.dist-info"))
    return meta[0].name if meta else "unknown"


def inputs_hash(repo: Path = REPO) -> str:
    h = hashlib.sha256(rasa_version().encode())
    for path in input_files(repo):
        h.update(str(path.relative_to(repo)).encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def train_args(out: Path, name: str, repo: Path = REPO) -> list[str]:
    return [str(RASA), "train", "--config", str(repo / "config.yml"), "--domain", str(repo / "bot" / "domain.yml"),
            "--data", str(repo / "bot" / "data"), str(repo / "bot" / "generated"),
            "--out", str(out), "--fixed-model-name", name]


def ensure_model(force: bool = False, quiet: bool = False) -> Path:
    from bot.generate import generate

    generate()
    digest = inputs_hash()
    target = cache_dir() / f"{digest}.tar.gz"
    if target.exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".train-") as tmp:
        started = time.monotonic()
        log = Path(tmp) / "train.log"
        with open(log, "w") as fh:
            rc = subprocess.run(train_args(Path(tmp), digest), cwd=REPO, env=rasa_env(),
                                stdout=fh, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            sys.stderr.write(log.read_text(errors="replace")[-6000:])
            raise SystemExit(f"rasa train failed (exit {rc})")
        os.replace(Path(tmp) / f"{digest}.tar.gz", target)
        if not quiet:
            print(f"rasa train: {time.monotonic() - started:.1f} s", file=sys.stderr)
    for old in sorted(target.parent.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True)[KEEP:]:
        old.unlink(missing_ok=True)
    return target


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="train even if a model for these inputs exists")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--hash", action="store_true", help="only print the input hash")
    args = parser.parse_args(argv)
    if args.hash:
        from bot.generate import generate

        generate()
        print(inputs_hash())
        return 0
    print(ensure_model(force=args.force, quiet=args.quiet))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

