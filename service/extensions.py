"""Unbound Flask extensions, bound to the app in `create_app`."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
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
# Limits are declared on the views; storage and on/off come from the config.
limiter = Limiter(key_func=get_remote_address)
# Admin sessions; the API authenticates with bearer tokens instead.
login_manager = LoginManager()
# Checked on the admin blueprint only: public forms and the one-click
# endpoint are protected by rate limits, the honeypot and double opt-in.
csrf = CSRFProtect()
