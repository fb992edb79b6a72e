"""Worker processes end with the process that started them, kill -9 included.

multiprocessing stops its children when the parent exits normally, but a parent
killed with SIGKILL runs no code: its parse and delivery workers would wait for
work that never comes, and the resource tracker with them, for ever. Each
worker therefore calls :func:`die_with_parent` first thing. It watches the pipe
its parent holds for it (``multiprocessing.parent_process().sentinel``, at end of
file once the parent is gone, on every platform) and, on Linux, also asks the
kernel for SIGKILL when the parent dies (``PR_SET_PDEATHSIG``), which ends a
worker even while its main thread holds the GIL in a long C call. The resource
tracker needs nothing: it exits when the last process holding its pipe has.

Workers are started with the ``spawn`` method (a fresh interpreter, safe in a
process that runs threads), so that their parent is the daemon itself.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_PARENT_GONE = 1  # exit status of a worker whose parent died


def die_with_parent() -> None:
    """End this process as soon as the process that started it dies.

    Call it first thing in a multiprocessing child; it does nothing elsewhere.
    If the parent died before this call (during start-up), the process ends now.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    watch = threading.Thread(
        target=_exit_when_gone, args=(parent.sentinel,), name="parent-watch", daemon=True
    )
    watch.start()
    # The parent we are told of is the OS parent with the spawn method only (a
    # forkserver's children are the forkserver's): arm the signal only then.
    if sys.platform == "linux" and os.getppid() == parent.pid:
        _signal_on_parent_death(signal.SIGKILL)
        if os.getppid() != parent.pid:  # it died before the signal was armed
            os._exit(_PARENT_GONE)


def _exit_when_gone(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(_PARENT_GONE)


def _signal_on_parent_death(signum: int) -> None:
    """Linux sends ``signum`` when the *thread* that started this process ends:
    feedbot starts workers from its event loop's thread, which lives as long as
    the process. Should the call fail, the watch on the sentinel still holds."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
