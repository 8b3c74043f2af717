"""Shared ``benchmarks/RESULTS.md``: each benchmark script rewrites only its own section.

A section is the text between ``<!-- BEGIN name -->`` and ``<!-- END name -->``; it starts with
the command that produced it, the date and the machine, so figures are never read without the
conditions they were measured in (the development machine is shared: the load average is part
of the record).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import sys
import time
from pathlib import Path

import numba
import numpy as np

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
_TITLE = "# Benchmark results\n\nEach section is rewritten by the script named in it; run it again to refresh.\n"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown memory"


def default_command() -> str:
    """How this process was started, as a ``python -m`` line when it was."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    head = f"python -m {spec.name}" if spec is not None else f"python {sys.argv[0]}"
    return " ".join([head, *sys.argv[1:]])


def python_speed(iterations: int = 2_000_000) -> float:
    """Millions of plain Python loop iterations per second, best of three.

    The shared host's speed varies several-fold from hour to hour with no sign in the load
    average; this figure, taken when a section is written, says which kind of hour it was.
    """
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(iterations):
            total += i
        best = min(best, time.perf_counter() - started)
    return iterations / best / 1e6


def machine_header(command: str) -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"Command: `{command}`  \n"
        f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}  \n"
        f"Machine: {os.cpu_count()} cores, {_cpu_model()}, {_memory()}, load average {load} at the end, "
        f"plain Python loop {python_speed():.1f}M iterations/s at the end  \n"
        f"Python {platform.python_version()}, numba {numba.__version__}, numpy {np.__version__}\n"
    )


def write_section(name: str, markdown: str, *, command: str | None = None, path: Path = RESULTS) -> None:
    """Replace (or append) section ``name`` of ``path`` with ``markdown`` and the machine header
    (placed under ``markdown``'s first line when that is a heading, else first).

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "RESULTS.md"
    >>> write_section("demo", "## Demo\\n\\nfirst", command="python -m demo", path=target)
    >>> write_section("other", "## Other", command="python -m other", path=target)
    >>> write_section("demo", "## Demo\\n\\nsecond", command="python -m demo", path=target)
    >>> text = target.read_text()
    >>> "second" in text and "first" not in text and "## Other" in text
    True
    >>> text.index("## Demo") < text.index("Command: `python -m demo`") < text.index("## Other")
    True
    """
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    header = machine_header(command or default_command())
    lines = markdown.strip("\n").split("\n")
    if lines[0].startswith("#"):
        rest = "\n".join(lines[1:]).lstrip("\n")
        content = "\n".join([lines[0], "", header, rest])
    else:
        content = "\n".join([header, *lines])
    body = f"{begin}\n{content.rstrip()}\n{end}\n"
    text = path.read_text() if path.exists() else _TITLE
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: body, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.write_text(text)
