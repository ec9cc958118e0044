"""CRM records: contacts, accounts and leads.

fields.py: their fields and models; store.py: get, create, update and delete them (the forms' values
and checks); search.py: lists, mass-send audiences and the compose page's choices; addresses.py: the
records that hold an address; related.py: the emails sent to a record and what deleting it does;
csv_import.py: importing a CSV file of them.
"""
