"""Errors that end a command with one clear line and exit code 2."""


class HarnessError(Exception):
    """Bad input or environment. The message is one line that says what to do."""

    exit_code = 2


class ToolMissing(HarnessError):
    """A required program is not installed."""

    def __init__(self, tool: str, hint: str = "run `make setup` (scripts/setup.sh) as root") -> None:
        super().__init__(f"required tool {tool!r} not found: {hint}")
        self.tool = tool


class Unsupported(HarnessError):
    """The scenario asks for something this containerd version cannot do (a ctr flag it lacks).

    A matrix reports it for that version and goes on with the others.
    """
