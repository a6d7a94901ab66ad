"""The build made at 836a014c0874 (add display_name): writes both names, reads display_name."""

import sqlalchemy as sa

from common import run, unique_email


def test(connection) -> None:
    email = unique_email("v2")
    connection.execute(
        sa.text("INSERT INTO users (full_name, display_name, email) VALUES ('Ada Lovelace', 'Ada Lovelace', :email)"),
        {"email": email},
    )
    name = connection.execute(
        sa.text("SELECT COALESCE(display_name, full_name) FROM users WHERE email = :email"), {"email": email}
    ).scalar_one()
    assert name == "Ada Lovelace", f"read back {name!r}"


run("v2", test)
