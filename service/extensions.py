"""Unbound Flask extensions every process binds to its app (the database).

The web app's own (rate limits, admin sign-in, CSRF) are in web_extensions.py:
a worker, which imports this module, never loads them (issue 14).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData, Table
from sqlalchemy.orm import DeclarativeBase

# Named constraints: Alembic can then alter them later, SQLite included.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    if TYPE_CHECKING:
        # Every model maps a Table (none a join or a select): `Model.__table__`
        # has the Table's API, `.update()` and `.insert()` included.
        __table__: ClassVar[Table]


db = SQLAlchemy(model_class=Base)
if TYPE_CHECKING:
    # Flask-SQLAlchemy builds `db.Model` from Base at run time, which a type
    # checker cannot follow; to mypy the models' base is Base itself, so their
    # `Mapped[...]` columns keep their types.
    Model = Base
else:
    Model = db.Model
