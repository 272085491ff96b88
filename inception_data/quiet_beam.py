"""Importing Apache Beam without its notice about an optional extra.

Without the `[gcp]` extra, `import apache_beam` logs "apitools not found, and bigquery client
libraries are not available..." on the root logger, and that call configures root logging as a
side effect. Nothing is wrong (BigQuery is not used; gs:// needs the extra and says so), yet it
is the first line a new user sees. Import this module before apache_beam: it imports Beam once
with that one message filtered out and root logging left as it was.
"""

import logging

NOTICE = "apitools not found"


class _DropNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return NOTICE not in record.getMessage()


def _import_beam() -> None:
    root = logging.getLogger()
    drop, placeholder = _DropNotice(), logging.NullHandler()
    unconfigured = not root.handlers  # logging.warning() would call basicConfig() then
    root.addFilter(drop)
    if unconfigured:
        root.addHandler(placeholder)
    try:
        import apache_beam  # noqa: F401
    finally:
        root.removeFilter(drop)
        if unconfigured:
            root.removeHandler(placeholder)


_import_beam()
