#!/usr/bin/env python3
"""Resolve git conflict blocks by keeping both sides (ours, then theirs): used for the
append-only registries (command table in src/cli/main.c, declarations in src/cli/cli.h)."""
import sys
for p in sys.argv[1:]:
    out, state = [], None
    for line in open(p):
        if line.startswith("<<<<<<< "):
            state = "ours"; continue
        if line.startswith("=======") and state == "ours":
            state = "theirs"; continue
        if line.startswith(">>>>>>> ") and state == "theirs":
            state = None; continue
        out.append(line)
    open(p, "w").write("".join(out))
