"""One blueprint per page group: dashboard (Painel), subs (Assinaturas), inbox (Postbacks),
audit (Registro), operators (Operadores)."""

INT64_MAX = 2**63 - 1  # SQLite's integers: a bigger id or cursor would be an OverflowError, a 500


def cursor(text: str) -> int:
    """A ``before`` query parameter (a row id): out of SQLite's range it is ignored, like any
    other value that is not a number (``request.args.get(..., type=cursor)`` gives None)."""
    value = int(text)
    if not 0 < value <= INT64_MAX:
        raise ValueError(text)
    return value
