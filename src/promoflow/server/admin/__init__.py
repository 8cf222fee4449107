"""The marketers' admin web UI, mounted at ``/admin``: server-rendered Jinja2 pages with htmx for partial updates.

It calls the same services as the API, in process (see ``gateway``), and never re-implements a rule.
"""
