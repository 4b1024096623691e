"""Running a script on a pseudo-terminal and answering its prompts, as the people at the keyboard would."""

from __future__ import annotations

import os
import pty
import select
import signal
import time
from dataclasses import dataclass


@dataclass
class TerminalRun:
    exit_code: int
    output: str  # stdout and stderr together, as the terminal showed them (answers are not echoed)
    unanswered: list[str]


def run_on_terminal(argv: list[str], env: dict[str, str], answers: list[tuple[str, str]],
                    timeout: float = 90.0) -> TerminalRun:
    """Run ``argv`` with a new pseudo-terminal as its controlling terminal; answer each prompt in turn.

    ``answers`` are ``(text the prompt contains, what to type)``, in the order the prompts come.
    """
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its stdin, stdout, stderr and /dev/tty
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    pending, output, answered_up_to = list(answers), b"", 0
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"no end after {timeout} s; the terminal showed: {output.decode(errors='replace')}")
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child has closed the terminal
                break
            if not chunk:
                break
            output += chunk
            while pending and pending[0][0].encode() in output[answered_up_to:]:
                answered_up_to = len(output)
                os.write(fd, pending.pop(0)[1].encode() + b"\n")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return TerminalRun(os.waitstatus_to_exitcode(status), output.decode(errors="replace"),
                       [prompt for prompt, _ in pending])
