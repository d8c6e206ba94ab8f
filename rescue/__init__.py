"""rescue: disaster recovery for Linux servers, on top of duplicity."""

import logging

__version__ = "0.1.0"

# Until the command line has set up the log file, rescue's records go nowhere: without a
# handler, Python's last resort would print them on stderr, beside the one line that counts
# (seen when a SIGTERM came before the log was set up: "stopped by SIGTERM" printed twice).
logging.getLogger("rescue").addHandler(logging.NullHandler())
