"""The migrations build exactly the schema the models describe."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from coretrack.db import make_engine
from coretrack.models import Base
from coretrack.schema import upgrade


# Neither SQLite's reflection nor Alembic's comparison reads expression indexes (lower(email)): the test
# below shows they are there and used.
@pytest.mark.filterwarnings("ignore:.*expression-based index:UserWarning", "ignore:.*expression-based index")
def test_migrations_to_head_match_the_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_upgrading_twice_is_harmless(tmp_path):
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    upgrade(url)
    upgrade(url)
    engine = make_engine(url)
    assert "recipients" in inspect(engine).get_table_names()
    engine.dispose()


def test_people_erased_before_the_upgrade_are_known_as_erased_after_it(tmp_path, empty_database_url):
    """Their old image and links then record nothing (see test_erased_tokens.py)."""
    from alembic import command
    from sqlalchemy import select, text

    from coretrack.db import make_session_factory
    from coretrack.models import Email, Recipient, User
    from coretrack.people.erasure import ERASED_ADDRESS
    from coretrack.schema import alembic_config
    from coretrack.tracking import tokens

    url = empty_database_url or f"sqlite:///{tmp_path / 'erased.db'}"
    upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        sender = User(name="sam")
        session.add(sender)
        session.flush()
        email = Email(subject="x", html_body="x", sender_id=sender.id, from_address="crm@example.test")
        email.recipients = [Recipient(address=address, token=tokens.new_token(b"k")) for address in
                            (ERASED_ADDRESS, "bob@example.test")]
        session.add(email)
        session.commit()
    command.downgrade(alembic_config(url), "0019")  # the schema before the flag, with those rows
    with engine.begin() as connection:
        assert "erased" not in {column["name"] for column in inspect(connection).get_columns("recipients")}
        assert connection.scalar(text("SELECT count(*) FROM recipients")) == 2
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        flags = session.execute(select(Recipient.address, Recipient.erased))
        assert {address: erased for address, erased in flags} == {ERASED_ADDRESS: True, "bob@example.test": False}
    engine.dispose()


def test_an_upgrade_keeps_every_row_of_the_tables_that_refer_to_a_table_it_alters(tmp_path, empty_database_url):
    """SQLite alters a table by copying it to a new one: with foreign keys on, dropping the old
    recipients table deleted every access event with it (ON DELETE CASCADE).  From the schema
    before this round of migrations to the newest, each row stays."""
    from sqlalchemy import text

    url = empty_database_url or f"sqlite:///{tmp_path / 'kept.db'}"
    upgrade(url, "0018")
    engine = make_engine(url)
    statements = [
        "INSERT INTO users (id, name, role, active, created_at) VALUES (1, 'sam', 'staff', true, '2026-01-01')",
        "INSERT INTO contacts (id, first_name, last_name, email, phone, email_opt_out, created_at) "
        "VALUES (1, 'Ann', 'Lee', 'ann@example.test', '', false, '2026-01-01')",
        "INSERT INTO emails (id, subject, html_body, text_body, sender_id, from_address, from_name, reply_to, "
        "status, tracking, created_at) VALUES (1, 's', '', '', 1, 'a@example.test', '', '', 'sent', true, "
        "'2026-01-01')",
        "INSERT INTO recipients (id, email_id, address, name, kind, token, status, reply, attempts, access_count, "
        "contact_id) VALUES (1, 1, 'ann@example.test', '', 'to', 'tok', 'sent', '', 0, 2, 1)",
        "INSERT INTO access_events (recipient_id, at, ip, user_agent, verdict) "
        "VALUES (1, '2026-01-02', '', 'Thunderbird', 'human')",
        "INSERT INTO email_links (id, email_id, position, url) VALUES (1, 1, 0, 'https://example.test/')",
        "INSERT INTO click_events (recipient_id, link_id, at, ip, user_agent, verdict) "
        "VALUES (1, 1, '2026-01-02', '', 'Thunderbird', 'human')",
        "INSERT INTO notifications (user_id, email_id, recipient_id, kind, at) "
        "VALUES (1, 1, 1, 'opened', '2026-01-02')",
    ]
    tables = ["users", "contacts", "emails", "recipients", "access_events", "email_links", "click_events",
              "notifications"]
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as connection:
        counts = {table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar() for table in tables}
    engine.dispose()
    assert counts == dict.fromkeys(tables, 1)


@pytest.mark.filterwarnings("ignore:.*expression-based index:UserWarning", "ignore:.*expression-based index")
def test_records_are_found_by_their_lower_case_address_through_an_index(tmp_path, empty_database_url):
    """Opt-outs and Do not track follow the address at every batch of every send: no table scan."""
    from sqlalchemy import func, select

    from coretrack.models import Account, Contact, Lead

    url = empty_database_url or f"sqlite:///{tmp_path / 'lower.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as connection:
        for model in (Contact, Lead, Account):
            query = select(model.id).where(func.lower(model.email).in_(["ann@example.test", "bob@example.test"]))
            compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
            if engine.dialect.name == "sqlite":
                plan = " ".join(str(row[-1]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
            else:
                connection.exec_driver_sql("SET enable_seqscan = off")  # an empty table: show that it could
                plan = " ".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled}"))
            assert f"ix_{model.__tablename__}_email_lower" in plan, plan
    engine.dispose()


def test_opt_outs_from_before_the_suppression_list_get_their_category(tmp_path, empty_database_url):
    from alembic import command
    from sqlalchemy import text

    from coretrack.schema import alembic_config

    url = empty_database_url or f"sqlite:///{tmp_path / 'categories.db'}"
    command.upgrade(alembic_config(url), "0029")
    engine = make_engine(url)
    old = [("a@example.test", "link", "unsubscribed with the link"), ("b@example.test", "bounce", "bounced: 5.1.1"),
           ("c@example.test", "sendgrid", "reported the email as spam (SendGrid)"),
           ("d@example.test", "sendgrid", "dropped by SendGrid: Invalid"),
           ("e@example.test", "sendgrid", "bounced (SendGrid): 5.1.1"), ("f@example.test", "records", "carried")]
    with engine.begin() as connection:
        for address, source, reason in old:
            connection.execute(text("INSERT INTO addresses (address, opted_out_at, opt_out_source, opt_out_reason, "
                                    "consent) VALUES (:a, '2026-01-01 00:00:00', :s, :r, '')"),
                               {"a": address, "s": source, "r": reason})
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        found = dict(connection.execute(text("SELECT address, opt_out_category FROM addresses")).all())
    engine.dispose()
    assert found == {"a@example.test": "unsubscribed", "b@example.test": "hard_bounce",
                     "c@example.test": "complaint", "d@example.test": "provider_drop",
                     "e@example.test": "hard_bounce", "f@example.test": "import"}
