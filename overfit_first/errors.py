"""One error type for problems a user can fix, and the wrapper that turns it into a clean exit."""

from __future__ import annotations

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """A problem with the user's input or environment: the message names the file or key and the fix."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a PipelineError becomes one readable line on stderr and exit status 1."""
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: no output of this stage was written", file=sys.stderr)
        sys.exit(130)
