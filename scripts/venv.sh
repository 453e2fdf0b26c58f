#!/usr/bin/env bash
# Create (or reuse) a virtualenv from a fully pinned lock file and link it into the checkout.
# The venv lives in the cache, keyed by the lock file's hash, so a fresh clone on the same machine
# reuses it and a changed lock file builds a new one. Installation resolves nothing (--no-deps, hashes).
# usage: scripts/venv.sh LINK PYTHON LOCK   e.g. scripts/venv.sh .venv python3.11 locks/app.lock
set -euo pipefail
link=$1 python=$2 lock=$3
cache=${GOVBOT_CACHE_DIR:-$HOME/.cache/govbot}
hash=$(sha256sum "$lock" | cut -c1-16)
target="$cache/venvs/$(basename "$lock" .lock)-$hash"
if [ ! -f "$target/.govbot-complete" ]; then
  # A pyenv shim may exist for a version that is not the active one: test by running it.
  if ! "$python" -c "" >/dev/null 2>&1; then
    for candidate in "$HOME/.pyenv/versions/"*/bin/"$python"; do
      [ -x "$candidate" ] && python=$candidate
    done
  fi
  "$python" -c "" >/dev/null 2>&1 || { echo "error: $python not found (needed for $link)" >&2; exit 1; }
  echo "setup: building $link from $lock (first time on this machine; this takes a while)"
  rm -rf "$target"
  mkdir -p "$(dirname "$target")"
  "$python" -m venv "$target"
  # --find-links: the CPU torch wheel lies on local disk; the lock pins its hash, so no CUDA build can slip in.
  "$target/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes \
      --find-links /opt/wheels -r "$lock" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  touch "$target/.govbot-complete"
fi
if [ "$(readlink "$link" 2>/dev/null)" != "$target" ]; then
  rm -rf "$link"
  ln -s "$target" "$link"
fi
