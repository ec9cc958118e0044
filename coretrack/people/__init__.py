"""What a person decides, bound to their email address rather than to any one record.

suppression.py: an address's opt-out, whichever records hold it, and its history; unsubscribe.py:
the link in each email that opts its recipient out; consent.py: the address's consent to having
its reading measured, with the proof of every change, and the consent texts; consent_page.py: the
consent and withdrawal pages a person reaches from their email; consent_proof.py: a person's consent
history as the record page and its exports show it; measurements.py: deleting what was measured about
a person on their withdrawal; erasure.py: erasing a person's records and the tracking data kept about
them.
"""
