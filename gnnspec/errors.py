"""Errors gnnspec raises for bad user input.

``InputError`` carries a message that names the file or record and what is wrong; the CLI
prints it on one line and exits with code 2. :func:`read_json_file` reads a user's JSON file
with such errors.
"""

import json
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """Bad user input: a file, record or argument that gnnspec refuses, with the reason."""


def read_json_file(path: str | Path, what: str) -> Any:
    """The parsed content of a JSON file; an :class:`InputError` naming the file (a ``what``) otherwise."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
