"""scripts/bench-import at a small size, so the benchmark stays runnable: a coreBOS-shaped MariaDB built,
imported into SQLite (and PostgreSQL) and again, every access row imported once, ``rows_per_s=`` last."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.mariadb import INSTALL, SERVER

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "scripts" / "benchmarks" / "corebos_import.py"


def test_the_import_benchmark_at_a_small_size_imports_everything_once_and_prints_rows_per_s_last(database, request):
    if not (SERVER and INSTALL):
        pytest.skip("no mariadb-server: scripts/test installs it")
    arguments = ["--rows", "3000"]
    if database == "postgresql":
        postgres = request.getfixturevalue("postgres_test_database")
        postgres.empty()
        arguments += ["--postgres-url", postgres.url]
    result = subprocess.run([sys.executable, str(BENCH), *arguments], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"rows_per_s=\d+", lines[-1]), lines
    # The benchmark checks itself: every access row imported on the first run, nothing on the second.
    for name in ("sqlite", "postgresql") if database == "postgresql" else ("sqlite",):
        assert any(line.startswith(f"{name}: ") and "re-run" in line for line in lines), lines
