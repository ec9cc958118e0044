"""What the fixtures of tests/conftest.py set up and tests compare against: the public URL of
``config`` and the passwords of the ``users`` fixture's admin and staff user."""

ADMIN_PASSWORD = "admin-password-1"
STAFF_PASSWORD = "staff-password-1"
PUBLIC_URL = "http://track.example.test/crm"
