"""The `promoflow` command."""

from .main import main

main()
