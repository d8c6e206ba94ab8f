"""Network in the rescue system: find the cards, bring one up, prove the backup host answers.

Why a package of its own: a recovery that fails half-way because the backup server is out of
reach has already erased disks. Everything here runs before any disk is touched, and every
failure names the layer that broke (link, address, DNS, route or TCP) so the admin knows
whether to check a cable, a DHCP server, a resolver, a gateway or the server itself.

- `nics`: the network cards (pyudev), their MAC, carrier and state.
- `spec`: the `dhcp | IFACE:ADDR/PREFIX,GW,DNS` form of rescue.net= and `rescue net up`.
- `ipcmd`: the few `ip -j` queries and changes, through rescue.process.execute.
- `dhcp`: one dhclient run per card, with its own pid and lease files under /run.
- `setup`: bring_up() for a spec, and the guided question.
- `reach`: check_reachable(), layer by layer.
"""
