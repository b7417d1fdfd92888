#!/usr/bin/env bash
# Idempotent set-up of the development/CI environment: system packages for headless
# rendering, a venv with pinned Python packages, the package itself in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

need_apt=()
for pkg in libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 libosmesa6; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[setup] apt-get install ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha"
want=$(cat requirements.txt setup.py | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    # torch's CUDA build fills most of a new venv (6.3 GiB measured); a full disk fails deep inside pip.
    need_gib=1
    ls -d "$VENV"/lib/python3*/site-packages/torch >/dev/null 2>&1 || need_gib=7
    free_gib=$(df -Pk "$VENV" | awk 'NR==2 {print int($4 / 1048576)}')
    if [ "$free_gib" -lt "$need_gib" ]; then
        echo "setup.sh: $free_gib GiB free where $VENV lives, the pinned packages need about $need_gib GiB; free disk space (old clones' .venv folders, /tmp) and run it again" >&2
        exit 1
    fi
    echo "[setup] installing pinned requirements (first run: a few minutes)"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -r requirements.txt
    "$VENV/bin/pip" install -q --no-deps -e .
    echo "$want" > "$stamp"
fi
echo "[setup] ready: $VENV"
