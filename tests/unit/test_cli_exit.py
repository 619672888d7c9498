"""After `run`, the CLI process ends with its exit code once its exit handlers ran, skipping the interpreter's teardown."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import atexit, sys, threading
    from openrouter_spend.cli import _exit_without_teardown

    atexit.register(print, "exit handler ran", flush=True)
    print("output before the exit", end="")  # unflushed: must still reach the pipe
    if sys.argv[1] == "thread":
        release = threading.Event()
        threading.Thread(target=release.wait, args=(1,)).start()  # a non-daemon thread still running
    _exit_without_teardown(3)
    print(" and after it: ordinary exit")
""")


def _run(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120)


def test_the_process_ends_there_with_its_code_after_the_exit_handlers():
    result = _run("alone")
    assert result.returncode == 3
    assert result.stdout.splitlines() == ["output before the exitexit handler ran"]


def test_a_running_non_daemon_thread_keeps_the_ordinary_exit():
    result = _run("thread")
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["output before the exit and after it: ordinary exit", "exit handler ran"]
