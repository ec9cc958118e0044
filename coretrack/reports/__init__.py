"""Reports on sent email (per email, per recipient, per record, and accesses over time) and the email list.

- filters.py: the query string the reports and the email list read (``parse_filters``);
- report.py: what every report is made of (columns, its statement, the filters' conditions);
- tables.py: the table reports (per email, recipient and record) and a page of one;
- activity.py: the Activity report (accesses over time) and a page of it;
- catalog.py: the reports by name, and the senders to filter on;
- chart.py: the Activity chart's geometry (pure, no SQL);
- export.py: the CSV export and JSON rows;
- email_list.py: the email list's statement, per-email counts and access events.
"""
