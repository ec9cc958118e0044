"""The migrations build exactly the schema the models describe."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from coretrack.db import make_engine, upgrade
from coretrack.models import Base


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

    from coretrack import tokens
    from coretrack.db import alembic_config, make_session_factory
    from coretrack.erasure import ERASED_ADDRESS
    from coretrack.models import Email, Recipient, User

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
