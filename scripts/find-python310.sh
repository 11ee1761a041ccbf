#!/bin/sh
# Prints the path of a Python 3.10 interpreter for `make` to build .venv with.
#
# Looks on PATH, under ~/.pyenv, /usr/local/bin, /usr/bin and among uv's Pythons. None
# there (Debian 12 and Ubuntu 24.04 ship none): installs one with uv (taken from PyPI
# into a private venv of the machine's python3 unless uv is already there), which
# needs internet. Otherwise fails with one line saying how to get Python 3.10.
# PYTHON310_NO_DOWNLOAD=1 skips the download; PYTHON310_SYSTEM_DIRS replaces
# "/usr/local/bin /usr/bin" (tests).
set -u

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/transfer-pipeline"

is_python310() {
  "$1" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1
}

found() {
  echo "$1"
  exit 0
}

for candidate in python3.10 "$HOME"/.pyenv/versions/3.10*/bin/python3.10; do
  is_python310 "$candidate" && found "$(command -v "$candidate")"
done
for dir in ${PYTHON310_SYSTEM_DIRS:-/usr/local/bin /usr/bin}; do
  is_python310 "$dir/python3.10" && found "$dir/python3.10"
done

uv_python() {  # a Python 3.10 that uv ($1) has or installs
  candidate=$("$1" python find 3.10 2>/dev/null) && is_python310 "$candidate" && found "$candidate"
  [ "${PYTHON310_NO_DOWNLOAD:-0}" = 1 ] && return 1
  echo "Python 3.10 not found: installing it with uv ($1)..." >&2
  "$1" python install 3.10 >&2 || return 1
  candidate=$("$1" python find 3.10 2>/dev/null) && is_python310 "$candidate" && found "$candidate"
  return 1
}

for uv in uv "$HOME/.local/bin/uv" "$CACHE/uv-venv/bin/uv"; do
  if command -v "$uv" >/dev/null 2>&1; then
    uv_python "$uv"
  fi
done

if [ "${PYTHON310_NO_DOWNLOAD:-0}" != 1 ] && command -v python3 >/dev/null 2>&1; then
  echo "Python 3.10 not found: getting uv from PyPI into $CACHE/uv-venv..." >&2
  if python3 -m venv "$CACHE/uv-venv" >&2 &&
      "$CACHE/uv-venv/bin/python" -m pip install -q --retries 1 --timeout 20 uv >&2; then
    uv_python "$CACHE/uv-venv/bin/uv"
  fi
fi

echo "Python 3.10 not found and could not be installed (needs internet): install it" \
  "(e.g. 'pip install uv && uv python install 3.10', 'pyenv install 3.10'," \
  "or your system's python3.10 package) and run make again." >&2
exit 1
