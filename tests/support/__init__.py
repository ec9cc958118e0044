"""What the tests share besides fixtures (those stay in tests/conftest.py): the real servers they start
(Apache, PostgreSQL, MariaDB, Dovecot, an SMTP sink), scripts/run as a user starts it, firing image
hits, sending through the product's own send path, and the values the fixtures set up.

Imported as ``support.<module>``: pytest puts tests/ on the import path (the test folders are not
packages), and scripts that use these helpers (tests/e2e/screenshots.py, scripts/benchmarks/) put
tests/ there themselves."""
