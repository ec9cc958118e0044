# shellcheck shell=bash disable=SC2034
# (Sourced, so no shebang; the variables set here are used by the scripts that source it.)
# Shared by scripts/run and scripts/test: install what is missing on a fresh Debian machine.
# Sourced, not run.  Idempotent and quick when everything is already there.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
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
    if [ "$(id -u)" -ne 0 ]; then
        log "need root to install ${missing[*]}; install them and run again"; return 1
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

www_data_can_read() {
    id www-data >/dev/null 2>&1 && runuser -u www-data -- test -r "$1" 2>/dev/null
}

# Where the venv lives.  Apache's workers (www-data) import coretrack from it, so when the
# checkout is not readable by www-data, coretrack is installed (not linked) into /opt.
# The data directory defaults to var/ in the checkout, under the same condition.
if [ -n "${CORETRACK_VENV:-}" ]; then
    VENV="$CORETRACK_VENV"; EDITABLE=1; DEFAULT_HOME="$REPO/var"
elif [ "$(id -u)" -ne 0 ] || www_data_can_read "$REPO/pyproject.toml"; then
    VENV="$REPO/.venv"; EDITABLE=1; DEFAULT_HOME="$REPO/var"
else
    checkout_id="$(printf '%s' "$REPO" | sha256sum | cut -c1-12)"
    VENV="/opt/coretrack/venv-$checkout_id"; EDITABLE=0; DEFAULT_HOME="/var/lib/coretrack-$checkout_id"
fi
export CORETRACK_VENV="$VENV"

ensure_venv() {
    # ensure_venv EXTRAS: a venv with coretrack installed with the given extras ("" or "test").
    local extras="$1" spec="" stamp
    [ -n "$extras" ] && spec="[$extras]"
    apt_install python3-venv python3-dev
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV from $SYSTEM_PYTHON"
        mkdir -p "$(dirname "$VENV")"
        "$SYSTEM_PYTHON" -m venv "$VENV"
        chmod 755 "$VENV"
    fi
    # The pinned, hashed lock (requirements/, refreshed by scripts/lock), then coretrack itself
    # without resolving anything: the same versions on every machine, every year.
    lock="$REPO/requirements/${extras:-run}.txt"
    stamp="$VENV/.coretrack-installed-$(cat "$REPO/pyproject.toml" "$lock" | sha256sum | cut -c1-16)-${extras:-base}"
    if [ ! -f "$stamp" ]; then
        log "installing coretrack${spec} into $VENV from ${lock#"$REPO"/}"
        "$VENV/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$lock"
        if [ "$EDITABLE" = 1 ]; then
            "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$REPO"
        else
            "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "$REPO"
        fi
        touch "$stamp"
    elif [ "$EDITABLE" = 0 ]; then
        # A copy, not a link: refresh it with the checkout's code on every run.
        "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall "$REPO"
    fi
}

ensure_apache() {
    # Apache 2.4 and a mod_wsgi compiled in the venv against the venv's (Debian's) Python.
    apt_install apache2 apache2-dev apache2-utils
    local so
    so="$(find "$VENV"/lib/python3*/site-packages/mod_wsgi/server -name 'mod_wsgi*.so' 2>/dev/null | head -1 || true)"
    # grep without -q: it reads all of ldd's output, so ldd never dies of SIGPIPE, which pipefail
    # would take for "not linked" (it did, about one check in six).
    if [ -z "$so" ] || ! ldd "$so" | grep "libpython3.*=> /lib\|libpython3.*=> /usr/lib" >/dev/null; then
        log "building mod_wsgi for $VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir --force-reinstall \
            --require-hashes -r "$REPO/requirements/apache.txt"
        so="$(find "$VENV"/lib/python3*/site-packages/mod_wsgi/server -name 'mod_wsgi*.so' | head -1)"
        if ! ldd "$so" | grep "libpython3.*=> /lib\|libpython3.*=> /usr/lib" >/dev/null; then
            log "mod_wsgi is not linked against Debian's libpython: $(ldd "$so" | grep python)"; return 1
        fi
    fi
    # Debian starts no service for us; the packaged instance must not hold ports or PID files.
    if [ -x /usr/sbin/apache2ctl ] && pgrep -x apache2 >/dev/null 2>&1 && [ -f /var/run/apache2/apache2.pid ]; then
        apache2ctl stop >/dev/null 2>&1 || true
    fi
}

ensure_chromium() {
    # Debian's Chromium and ChromeDriver for the browser tests (nothing downloaded at run time:
    # tests/e2e points Selenium at these two binaries and turns Selenium Manager off).
    apt_install chromium chromium-driver fonts-dejavu-core
}

ensure_postgresql() {
    # A private PostgreSQL cluster for the suite's second database: its own directory owned by
    # postgres, loopback TCP on a free port, password auth for the app's role.  Exports
    # CORETRACK_TEST_POSTGRES_URL (and _DATA, _BIN so a test can stop and start the server);
    # stop_postgresql removes it.  An URL already set means a server someone else runs: left alone.
    [ -n "${CORETRACK_TEST_POSTGRES_URL:-}" ] && return 0
    apt_install postgresql
    local bin port root password
    bin="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    root="$(mktemp -d /var/tmp/coretrack-pg.XXXXXX)"
    POSTGRES_ROOT="$root"
    chmod 755 "$root"; chown postgres:postgres "$root"
    port="$("$SYSTEM_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    password="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
    runuser -u postgres -- "$bin/initdb" -D "$root/data" -U postgres --auth-local=peer \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    # In the config file, so a test can stop and start it with a bare pg_ctl.  fsync off: a
    # cluster thrown away after the run, not a durability test of PostgreSQL.
    printf '%s\n' "listen_addresses = '127.0.0.1'" "port = $port" "unix_socket_directories = '$root'" \
        "fsync = off" "max_connections = 200" >> "$root/data/postgresql.conf"
    runuser -u postgres -- "$bin/pg_ctl" -D "$root/data" -l "$root/server.log" -w start >/dev/null
    runuser -u postgres -- "$bin/psql" -h "$root" -p "$port" -q -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE coretrack LOGIN CREATEDB PASSWORD '$password'" \
        -c "CREATE DATABASE coretrack OWNER coretrack"
    export CORETRACK_TEST_POSTGRES_URL="postgresql+psycopg://coretrack:$password@127.0.0.1:$port/coretrack"
    export CORETRACK_TEST_POSTGRES_DATA="$root/data" CORETRACK_TEST_POSTGRES_BIN="$bin"
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($root)"
}

stop_postgresql() {
    # Stops and removes the cluster ensure_postgresql started, if any.
    [ -n "${POSTGRES_ROOT:-}" ] || return 0
    runuser -u postgres -- "$CORETRACK_TEST_POSTGRES_BIN/pg_ctl" -D "$POSTGRES_ROOT/data" -m immediate stop \
        >/dev/null 2>&1 || true
    rm -rf "$POSTGRES_ROOT"
}
