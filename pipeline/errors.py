"""The one exception type for problems a user can fix."""

from __future__ import annotations


class PipelineError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""

    # True when threads may still be stuck waiting on something gone (a tracking server): the
    # process then exits without waiting for them.
    exit_at_once = False
