"""Reports on sent email (per email, recipient, record and domain, accesses over time, rates, links,
comparisons) and the email list.

- filters.py: the query string the reports and the email list read (``parse_filters``);
- report.py: what every report is made of (columns, its statement, the filters' conditions);
- tables.py: the table reports (per email, recipient and record) and a page of one;
- activity.py: the Activity report (accesses over time) and a page of it;
- catalog.py: the reports by name, and the senders to filter on;
- chart.py: the Activity and Compare charts' geometry (pure, no SQL);
- export.py: the CSV export and JSON rows;
- email_list.py: the email list's statement, per-email counts and access events;
- rates.py: rates that name their base (per email, per domain), likely-human or all loads;
- links.py: an email's clicks per link; click_map.py: its HTML with each link's share marked;
- domains.py: the Domains report (per recipient address domain);
- compare.py: two to four emails side by side, their opens day by day after sending.
"""
