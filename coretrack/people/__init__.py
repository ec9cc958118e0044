"""What a person decides, bound to their email address rather than to any one record.

suppression.py: an address's opt-out, whichever records hold it, and its history; unsubscribe.py:
the link in each email that opts its recipient out; erasure.py: erasing a person's records and the
tracking data kept about them.
"""
