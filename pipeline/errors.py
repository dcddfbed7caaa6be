"""The one exception type for problems a user can fix, and the walk along an exception's causes."""

from __future__ import annotations

from collections.abc import Iterator


class PipelineError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""

    # True when threads may still be stuck waiting on something gone (a tracking server): the
    # process then exits without waiting for them.
    exit_at_once = False


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    """`exc` and every exception it was raised from or during."""
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__
