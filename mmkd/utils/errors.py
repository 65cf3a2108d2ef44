"""One way to add context (the block, the teacher, the checkpoint as given) to an error."""


def with_message(error: Exception, message: str) -> Exception:
    """An exception of ``error``'s type carrying ``message`` (to raise ``from error``), or, for
    a type whose constructor takes other arguments, ``error`` itself with ``message`` added as
    a note."""
    try:
        new = type(error)(message)
    except Exception:
        error.add_note(message)
        return error
    new.__cause__ = error
    return new
