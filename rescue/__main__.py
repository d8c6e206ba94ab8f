"""`python -m rescue` is the same as the `rescue` command."""

from rescue.launch import main

main()
