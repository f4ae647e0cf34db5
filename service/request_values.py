"""Reading a request's form fields, query arguments and cookies without building exceptions."""

from __future__ import annotations

from typing import Any, TypeVar, cast

from werkzeug.datastructures import MultiDict

T = TypeVar("T")


def first(values: MultiDict[str, str], key: str) -> str | None:
    """`values.get(key)`: the first value of `key`, None when there is none.

    Werkzeug's `MultiDict.get` looks a missing key up by raising a BadRequestKeyError
    (an HTTP exception, built each time) and catching it; a sign-up asked for some ten
    missing keys that way (issue 14, bench/README.md, seventh round). `getlist` does not.
    """
    found = values.getlist(key)
    return found[0] if found else None


def bound(proxy: T) -> T:
    """The object behind one of Flask's context-local proxies (`request`, `g`, `current_app`).

    Each attribute read through a proxy looks the object up again (four Python calls);
    a request hook that reads several attributes binds it once (issue 14,
    bench/README.md, eighth round).
    """
    return cast(Any, proxy)._get_current_object()
