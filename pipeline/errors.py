"""The one exception type for problems a user can fix."""

from __future__ import annotations


class PipelineError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""
