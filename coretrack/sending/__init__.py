"""Sending email: preparing and saving it (compose.py), the one send use case of the form, the API and
the command line (send.py), its messages (messages.py, mime.py), delivering them (delivery.py,
claims.py, smtp.py, and worker.py for the queue), what becomes of it afterwards (status.py), and
what an email may hold or start from (limits.py, merge_fields.py, templates.py, drafts.py)."""
