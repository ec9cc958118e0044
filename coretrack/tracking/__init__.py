"""Open and click tracking: the hit path.

A load of the image (image.py: its path, GIF and token) is checked (tokens.py, corebos_images.py)
and queued by the in-process writer (tracker.py), which counts it (counting.py, by the rules of
verdicts.py) or spools it (spool.py) while the database is away; Apache's hit log (hitlog.py,
ingester.py) and a provider's opens count through the same counting.  Clicks go through
clicks.py; retention.py deletes old events.
"""
