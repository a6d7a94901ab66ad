"""The build made at 3f55b760f0a3 (the merge): display_name only, and an audit_log entry per
change; it never touches full_name."""

import sqlalchemy as sa

from common import run, unique_email


def test(connection) -> None:
    email = unique_email("v3")
    connection.execute(sa.text("INSERT INTO users (display_name, email) VALUES ('Ada', :email)"), {"email": email})
    user_id, name = connection.execute(
        sa.text("SELECT id, display_name FROM users WHERE email = :email"), {"email": email}
    ).one()
    connection.execute(sa.text("INSERT INTO audit_log (user_id, action) VALUES (:id, 'created')"), {"id": user_id})
    assert name == "Ada", f"read back {name!r}"


run("v3", test)
