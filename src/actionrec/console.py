"""What the console shows of a run's log: each line once.

A user error is printed by the entry point as one ``error: ...`` line, and the run directory as
``Run directory: ...``; the log file keeps them too, through records marked :data:`FILE_ONLY`,
which the console handler of ``conf/hydra/default.yaml`` drops (:class:`SkipFileOnly`).
"""

from __future__ import annotations

import logging

FILE_ONLY = {"file_only": True}  # ``extra=`` of a record for the log file alone


class SkipFileOnly(logging.Filter):
    """Drops records logged with ``extra=FILE_ONLY``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)
