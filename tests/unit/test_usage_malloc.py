"""The usage service fixes glibc's thresholds at start, so freed batch buffers leave the
process (docs in services/usage/malloc.py); elsewhere it is a no-op that says so."""

from __future__ import annotations

import platform

from services.usage.malloc import return_freed_memory


def test_thresholds_are_fixed_on_glibc_and_skipped_elsewhere() -> None:
    is_glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert return_freed_memory() is is_glibc
