"""Objects that survive a fork: ZeroGPU runs each GPU call in a worker forked from the server process.

Below every layer that holds a lock (the pipeline cache, the Engine's memo), so none of them imports
the hosting code that knows about ZeroGPU.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable


def renew_after_fork(owner: object, attribute: str, make: Callable[[], object]) -> None:
    """Give `owner.attribute` a fresh `make()` in a child process forked from this one.

    ZeroGPU runs each GPU call in a worker forked from the server: a lock that another thread held at
    that moment would stay held in the worker for ever, and its first use there would hang.
    """
    if not hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
        return
    ref = weakref.ref(owner)

    def renew() -> None:
        alive = ref()
        if alive is not None:
            setattr(alive, attribute, make())

    os.register_at_fork(after_in_child=renew)
