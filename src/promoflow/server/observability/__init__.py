"""What an operator watches: Prometheus metrics (/metrics), their multiprocess files, and the figures read from
the database when scraped. See docs/operators.md ("Metrics")."""
