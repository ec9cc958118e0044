"""Reports on sent email: per email, per recipient, per record, and accesses over time.

- filters.py: the query string every report reads (``parse_filters``);
- queries.py: each report's columns and SQL, and a page of it;
- chart.py: the Activity chart's geometry (pure, no SQL);
- export.py: the CSV export and JSON rows.
"""

from .chart import Chart, chart
from .export import csv_cell, csv_lines, json_rows
from .filters import Filters, parse_filters
from .queries import REPORTS, Activity, ActivityReport, Column, Report, Row, activity_page, senders, table_page

__all__ = [
    "REPORTS", "Activity", "ActivityReport", "Chart", "Column", "Filters", "Report", "Row", "activity_page", "chart",
    "csv_cell", "csv_lines", "json_rows", "parse_filters", "senders", "table_page",
]
