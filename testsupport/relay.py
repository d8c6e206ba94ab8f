#!/usr/bin/python3
"""A relay QEMU starts for each guest connection (`guestfwd=...-cmd:relay.py HOST PORT`).

QEMU's plain guestfwd form (`-tcp:HOST:PORT`) connects once, when the VM starts, so a second
ssh connection from the guest finds nothing (VM-NOTES.md). The command form runs this per
connection with the guest's stream on stdin and stdout; it copies bytes both ways to HOST:PORT
until either side closes. Standard library only: it runs under the system python3.
"""

import os
import selectors
import socket
import sys


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    try:
        remote = socket.create_connection((host, port), timeout=30)
    except OSError as exc:
        print(f"relay: cannot connect to {host}:{port}: {exc}", file=sys.stderr)
        return 1
    remote.settimeout(None)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    selector = selectors.DefaultSelector()
    selector.register(stdin, selectors.EVENT_READ)
    selector.register(remote, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj == stdin:
                data = os.read(stdin, 65536)
                if not data:
                    remote.shutdown(socket.SHUT_WR)
                    selector.unregister(stdin)
                    continue
                remote.sendall(data)
            else:
                data = remote.recv(65536)
                if not data:
                    return 0
                view = memoryview(data)
                while view:
                    view = view[os.write(stdout, view) :]


if __name__ == "__main__":
    sys.exit(main())
