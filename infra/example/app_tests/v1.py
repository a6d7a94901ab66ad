"""The build made at d2ca87e6a2c7 (create users): writes and reads full_name only."""

import sqlalchemy as sa

from common import run, unique_email


def test(connection) -> None:
    email = unique_email("v1")
    connection.execute(sa.text("INSERT INTO users (full_name, email) VALUES ('Ada Lovelace', :email)"), {"email": email})
    name = connection.execute(sa.text("SELECT full_name FROM users WHERE email = :email"), {"email": email}).scalar_one()
    assert name == "Ada Lovelace", f"read back {name!r}"


run("v1", test)
