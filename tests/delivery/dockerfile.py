"""A small Dockerfile reader: instructions with continuation lines joined."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, e.g. ("RUN", "pip install ...")."""

    op: str
    value: str


def parse(path: Path) -> list[Instruction]:
    """Instructions in order; comments dropped, `\\` continuations joined."""
    out: list[Instruction] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        op, _, value = full.partition(" ")
        out.append(Instruction(op.upper(), value.strip()))
    return out


def env(instructions: list[Instruction]) -> dict[str, str]:
    """All ENV key=value pairs, later ones winning."""
    out: dict[str, str] = {}
    for ins in instructions:
        if ins.op == "ENV":
            for word in shlex.split(ins.value):
                key, _, value = word.partition("=")
                out[key] = value
    return out


def exec_form(value: str) -> list[str]:
    """A JSON exec-form argument list (CMD ["a", "b"])."""
    args = json.loads(value)
    assert isinstance(args, list) and all(isinstance(a, str) for a in args)
    return args


def healthcheck_cmd(instructions: list[Instruction]) -> list[str]:
    """The HEALTHCHECK's CMD as an exec-form list."""
    (hc,) = [i for i in instructions if i.op == "HEALTHCHECK"]
    m = re.search(r"\bCMD\s+(\[.*\])\s*$", hc.value)
    assert m, hc.value
    return exec_form(m.group(1))
