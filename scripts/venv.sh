# Sourced by scripts/check and scripts/demo: make .venv (Python 3.11+) and install the
# project with its dev extra, again only when pyproject.toml has changed since.
set -euo pipefail

find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "anchorgate needs Python 3.11 or newer; install it (Debian: apt-get install python3)" >&2
    return 1
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else return 1; fi
}

ensure_venv() {
    local python stamp want
    if [ ! -x .venv/bin/python ]; then
        python=$(find_python)
        if ! "$python" -m venv .venv 2>/dev/null; then
            rm -rf .venv
            echo "python3 -m venv failed; installing Debian's python3-venv" >&2
            as_root apt-get update -q && as_root apt-get install -y -q python3-venv ||
                { echo "could not install python3-venv: run 'apt-get install python3-venv' as root" >&2; return 1; }
            "$python" -m venv .venv
        fi
    fi
    stamp=.venv/.anchorgate-installed
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        .venv/bin/python -m pip install -q --upgrade pip
        .venv/bin/python -m pip install -q -e '.[dev]'
        echo "$want" >"$stamp"
    fi
}

# scripts/check only: the broker tests start a real Mosquitto. Never fails the caller;
# the demo does not call it (without Mosquitto it uses the embedded Python broker).
ensure_mosquitto() {
    if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
        return 0
    fi
    echo "mosquitto is not installed; installing Debian's mosquitto package" >&2
    as_root apt-get update -q && as_root apt-get install -y -q mosquitto mosquitto-clients ||
        echo "could not install mosquitto: the tests that need a broker will fail" >&2
}
