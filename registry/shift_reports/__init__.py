"""Shift and daily reports of a site: composed from the services' sections, rendered to PDF, XLSX or CSV,
scheduled per site and delivered by e-mail or webhook with a delivery log (docs/REPORTS.md).

Not ``registry/reports.py``: that is the provider's usage and value report across sites.
"""
