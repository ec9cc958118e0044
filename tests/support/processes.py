"""Stopping the servers the tests start, each in a session of its own, so that nothing is left behind."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_group(process: subprocess.Popen, how: int = signal.SIGTERM, patience: float = 20) -> None:
    """``how`` to the process group a child started (its own session), SIGKILL after ``patience`` s."""
    if process.poll() is None:
        os.killpg(process.pid, how)
        try:
            process.wait(timeout=patience)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
