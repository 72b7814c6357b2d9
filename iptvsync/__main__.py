"""``python -m iptvsync``."""

from iptvsync.cli import main

main()
