"""A process that counts the real-time signals it receives: the real effect of a
``process.signal`` action, counted exactly.

``python sigcounter.py OUT`` blocks SIGRTMIN and SIGTERM and takes them with ``sigwaitinfo``,
one queued signal at a time (real-time signals are queued, not merged like SIGCONT would be),
appending the sender's PID to OUT as one line per signal. It writes ``ready`` first, once the
signals are blocked; SIGTERM ends it.
"""

from __future__ import annotations

import signal
import sys


def main() -> int:
    wanted = {signal.SIGRTMIN, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    with open(sys.argv[1], "a", buffering=1, encoding="ascii") as out:
        out.write("ready\n")
        while True:
            info = signal.sigwaitinfo(wanted)
            if info.si_signo == signal.SIGTERM:
                return 0
            out.write(f"{info.si_pid}\n")


if __name__ == "__main__":
    sys.exit(main())
