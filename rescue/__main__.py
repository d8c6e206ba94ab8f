"""`python -m rescue` is the same as the `rescue` command."""

from rescue.cli import main

main()
