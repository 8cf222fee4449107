"""The promoflow server: Engage-compatible HTTP API, FTP(S) file transfer and the background worker."""
