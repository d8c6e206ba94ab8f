"""A tiny FTP(S) server for the tests: one user, one root directory, 127.0.0.1 only.

Started by tests/servers.py:FtpServer as a child process. The password comes from the
RESCUE_TEST_FTP_PASSWORD environment variable and never from argv, so it cannot leak through
`ps` or /proc/<pid>/cmdline (the same rule rescue follows). pyftpdlib masks it in its log.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

HOST = "127.0.0.1"
PASSWORD_ENV = "RESCUE_TEST_FTP_PASSWORD"
# e=cd l=list r=retr a=append d=delete f=rename m=mkdir w=store M=chmod T=mtime
PERMISSIONS = "elradfmwMT"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--passive-ports", required=True, help="FIRST-LAST, inclusive")
    parser.add_argument("--log", required=True)
    args = parser.parse_args(argv)

    password = os.environ.get(PASSWORD_ENV)
    if not password:
        parser.error(f"the password must be given in the environment variable {PASSWORD_ENV}")

    logging.basicConfig(
        filename=args.log,
        level=logging.INFO,
        format="%(asctime)s ftpd[%(process)d] %(levelname)s %(message)s",
    )

    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, password, args.root, perm=PERMISSIONS)
    first, last = (int(p) for p in args.passive_ports.split("-"))

    # A subclass, so that the settings stay on this server and off pyftpdlib's class.
    class Handler(FTPHandler):
        pass

    Handler.authorizer = authorizer
    Handler.passive_ports = range(first, last + 1)
    Handler.masquerade_address = None
    Handler.permit_foreign_addresses = False
    Handler.auth_failed_timeout = 0.2  # pyftpdlib's 3 s only slows the tests down
    Handler.banner = "rescue test ftpd ready."

    # SIGTERM becomes SystemExit, which serve_forever handles by closing every connection.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    server = FTPServer((HOST, args.port), Handler)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
