# Shared by scripts/run and scripts/test: install what is missing on a fresh Debian machine.
# Sourced, not run.  Idempotent and quick when everything is already there.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${CORETRACK_VENV:-$REPO/.venv}"
# Debian's Python, not pyenv's: Apache's www-data workers must be able to read it (see README).
SYSTEM_PYTHON=/usr/bin/python3

log() { printf '[coretrack] %s\n' "$*" >&2; }

apt_install() {
    # apt_install PACKAGE...: installs the Debian packages that are missing.
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        log "need root to install ${missing[*]}; install them and run again"; return 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
    # ensure_venv EXTRAS: a venv with coretrack installed (editable) with the given extras ("" or "test").
    local extras="$1"
    apt_install python3-venv python3-dev
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV from $SYSTEM_PYTHON"
        "$SYSTEM_PYTHON" -m venv "$VENV"
    fi
    local spec="" stamp
    [ -n "$extras" ] && spec="[$extras]"
    stamp="$VENV/.coretrack-installed-$(cat "$REPO/pyproject.toml" | sha256sum | cut -c1-16)-${extras:-base}"
    if [ ! -f "$stamp" ]; then
        log "installing coretrack${extras:+ with [$extras]} into $VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
        "$VENV/bin/pip" install -q --disable-pip-version-check -e "$REPO$spec"
        touch "$stamp"
    fi
}
