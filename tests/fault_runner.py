"""Runs the chargen CLI with slow checkpoint writes, for the fault-injection test: before
each file is renamed into place it announces 'WRITING <name>' on stderr and pauses, so the
test can kill the process in the middle of a save. Not part of the product."""

import os
import sys
import time

import chargen.files as files
from chargen.cli import main

_real_replace = os.replace


class _SlowOs:
    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def replace(src, dst):
        print(f"WRITING {os.path.basename(dst)}", file=sys.stderr, flush=True)
        time.sleep(0.05)
        _real_replace(src, dst)


files.os = _SlowOs()
sys.exit(main(sys.argv[1:]))
