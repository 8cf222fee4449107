"""The `promoflow` command."""
