"""openrouter-spend run imports the gate's and the digest's libraries in the background, off the main thread."""

from __future__ import annotations

import sys
import threading

from openrouter_spend.runner import import_in_background


def test_background_imports_load_every_module_and_leave_a_failure_to_the_task():
    sys.modules.pop("colorsys", None)
    thread = import_in_background(("openrouter_spend_no_such_module", "colorsys"))
    assert thread is not threading.current_thread() and thread.daemon
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert "colorsys" in sys.modules  # a failed import does not stop the ones after it
    assert "openrouter_spend_no_such_module" not in sys.modules

