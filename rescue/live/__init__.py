"""The live rescue ISO's side of rescue: what its consoles do at boot.

The ISO is generic: every host-specific fact comes from the backup's manifest, and every choice
for this boot comes from the kernel command line (`rescue.plan=`, `rescue.net=`, `rescue.after=`,
`rescue.ssh=1`) or from the admin at the console.
"""
