"""What every example build's test shares: the database from DATABASE_URL, one transaction, and a
one-line failure (exit 1) that `shiftguard rehearse` shows next to the rule's prediction."""

import os
import sys
import uuid

import sqlalchemy as sa


def engine() -> sa.Engine:
    url = os.environ["DATABASE_URL"]
    # shiftguard also takes the driverless spellings; SQLAlchemy needs the driver named.
    for plain, driver in (("postgres://", "postgresql+psycopg://"), ("postgresql://", "postgresql+psycopg://"),
                          ("mysql://", "mysql+pymysql://"), ("mariadb://", "mysql+pymysql://")):
        if url.startswith(plain):
            url = driver + url[len(plain):]
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def unique_email(build: str) -> str:
    step = os.environ.get("SHIFTGUARD_REHEARSAL_STEP", "manual")
    return f"{build}-{step}-{uuid.uuid4().hex[:12]}@example.com"


def run(build: str, test) -> None:
    """Runs `test(connection)` in a transaction that is rolled back: the test leaves no rows."""
    try:
        with engine().connect() as connection:
            with connection.begin() as transaction:
                test(connection)
                transaction.rollback()
    except Exception as error:  # the test's verdict, in one line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"{build}: FAIL: {first}")
        sys.exit(1)
    print(f"{build}: ok")
