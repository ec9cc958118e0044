"""Outbound webhooks: admins register URLs (endpoints.py) for event types; each change an event reports
writes it to the outbox in its own transaction (events.py, called at the one place each change happens);
the worker makes one delivery per subscribed endpoint and sends it, signed (signing.py), retrying with
backoff for more than a day before it becomes a dead letter (delivery.py).
"""
