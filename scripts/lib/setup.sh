# shellcheck shell=bash disable=SC2034
# (Sourced, so no shebang; the variables set here are used by the scripts that source it.)
# Shared by scripts/run and scripts/test: install what is missing on a fresh Debian machine.
# Sourced, not run.  Idempotent and quick when everything is already there.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# runuser, apache2 and the rest live in sbin, which a minimal PATH (cron, env -i, sudo) leaves out.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
# Debian's Python, not pyenv's: Apache's www-data workers must be able to read it (see docs/deployment.md).
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
# checkout is not readable by www-data, or its path could not go into Apache's config (only
# letters, digits and . _ / + @ - can), coretrack is installed (not linked) into /opt.
# The data directory defaults to var/ in the checkout, under the same condition.
# Decided from the checkout alone, never from the environment: a scripts/run started by the
# tests of another scripts/run must not take over its parent's choices.
if [ "$(id -u)" -ne 0 ] || { [[ "$REPO" =~ ^/[A-Za-z0-9._/+@-]*$ ]] && www_data_can_read "$REPO/pyproject.toml"; }; then
    VENV="$REPO/.venv"; EDITABLE=1; DEFAULT_HOME="$REPO/var"
else
    checkout_id="$(printf '%s' "$REPO" | sha256sum | cut -c1-12)"
    VENV="/opt/coretrack/venv-$checkout_id"; EDITABLE=0; DEFAULT_HOME="/var/lib/coretrack-$checkout_id"
fi

code_digest() {
    # What a copy installed into /opt was built from: the package, its templates and pyproject.toml.
    (cd "$REPO" && find coretrack templates apache pyproject.toml -type f ! -name '*.pyc' -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

ensure_venv() {
    # ensure_venv LOCK: a venv with coretrack and the pinned, hashed packages of requirements/LOCK.txt
    # ("run" or "test"; refreshed by scripts/lock): the same versions on every machine, every year.
    local lock="$1" code
    apt_install python3-venv python3-dev
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV from $SYSTEM_PYTHON"
        mkdir -p "$(dirname "$VENV")"
        "$SYSTEM_PYTHON" -m venv "$VENV"
        chmod 755 "$VENV"
    fi
    # Stamps say what is installed: a lock's packages ("test" includes "run"), and for a copy the
    # code it was built from.
    if [ ! -f "$(lock_stamp "$lock")" ] && [ ! -f "$(lock_stamp test)" ]; then
        log "installing coretrack into $VENV from requirements/$lock.txt"
        "$VENV/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$REPO/requirements/$lock.txt"
        if [ "$EDITABLE" = 1 ]; then
            "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$REPO"
        else
            "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "$REPO"
            code_digest > "$VENV/.coretrack-code"
        fi
        touch "$(lock_stamp "$lock")"
    fi
    if [ "$EDITABLE" = 0 ]; then
        # A copy, not a link: refresh it when the checkout's code changed (not while it is the
        # same: a test suite may be running from this venv).
        code="$(code_digest)"
        if [ "$(cat "$VENV/.coretrack-code" 2>/dev/null)" != "$code" ]; then
            log "refreshing the copy of coretrack in $VENV"
            "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall "$REPO"
            printf '%s\n' "$code" > "$VENV/.coretrack-code"
        fi
    fi
}

lock_stamp() {
    printf '%s' "$VENV/.coretrack-installed-$(cat "$REPO/pyproject.toml" "$REPO/requirements/$1.txt" \
        | sha256sum | cut -c1-16)-$1"
}

debian_linked() {
    # Whether this mod_wsgi uses Debian's libpython.  grep reads all of ldd's output (no -q): with
    # pipefail, ldd killed by SIGPIPE would make a good module look bad, and rebuild it.
    ldd "$1" | grep "libpython3.*=> /lib\|libpython3.*=> /usr/lib" >/dev/null
}

ensure_apache() {
    # Apache 2.4 and a mod_wsgi compiled in the venv against the venv's (Debian's) Python.
    apt_install apache2 apache2-dev apache2-utils
    local so
    so="$(find "$VENV"/lib/python3*/site-packages/mod_wsgi/server -name 'mod_wsgi*.so' 2>/dev/null | head -1 || true)"
    if [ -z "$so" ] || ! debian_linked "$so"; then
        log "building mod_wsgi for $VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir --force-reinstall \
            --require-hashes -r "$REPO/requirements/apache.txt"
        so="$(find "$VENV"/lib/python3*/site-packages/mod_wsgi/server -name 'mod_wsgi*.so' | head -1)"
        if ! debian_linked "$so"; then
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

ensure_dovecot() {
    # Debian's Dovecot for the bounce mailbox tests: tests/support/dovecot.py starts its own on a
    # loopback port with its own users and mail folder (the package's service is not used).
    apt_install dovecot-imapd
}

ensure_mariadb() {
    # Debian's MariaDB for the coreBOS import tests: tests/test_corebos_import.py starts a private
    # server on a loopback port with its own data directory (the package's service is not used).
    apt_install mariadb-server
}

ensure_dnsmasq() {
    # dnsmasq for the DNS check and DKIM tests: tests/support/dns.py starts its own on a loopback port,
    # serving the test's records (dnsmasq-base: the program without the package's service).
    apt_install dnsmasq-base
}

as_postgres() {
    # From /: the checkout may be a folder postgres cannot enter (root's home, a 700 temp folder).
    (cd / && runuser -u postgres -- "$@")
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
    as_postgres "$bin/initdb" -D "$root/data" -U postgres --auth-local=peer \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    # In the config file, so a test can stop and start it with a bare pg_ctl.  fsync off: a
    # cluster thrown away after the run, not a durability test of PostgreSQL.
    printf '%s\n' "listen_addresses = '127.0.0.1'" "port = $port" "unix_socket_directories = '$root'" \
        "fsync = off" "max_connections = 200" >> "$root/data/postgresql.conf"
    as_postgres "$bin/pg_ctl" -D "$root/data" -l "$root/server.log" -w start >/dev/null
    as_postgres "$bin/psql" -h "$root" -p "$port" -q -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE coretrack LOGIN CREATEDB PASSWORD '$password'" \
        -c "CREATE DATABASE coretrack OWNER coretrack"
    export CORETRACK_TEST_POSTGRES_URL="postgresql+psycopg://coretrack:$password@127.0.0.1:$port/coretrack"
    export CORETRACK_TEST_POSTGRES_DATA="$root/data" CORETRACK_TEST_POSTGRES_BIN="$bin"
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($root)"
}

stop_postgresql() {
    # Stops and removes the cluster ensure_postgresql started, if any.
    [ -n "${POSTGRES_ROOT:-}" ] || return 0
    as_postgres "$CORETRACK_TEST_POSTGRES_BIN/pg_ctl" -D "$POSTGRES_ROOT/data" -m immediate stop \
        >/dev/null 2>&1 || true
    rm -rf "$POSTGRES_ROOT"
}
