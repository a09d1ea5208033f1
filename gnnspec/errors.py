"""Errors gnnspec raises for bad user input.

``InputError`` carries a message that names the file or record and what is wrong; the CLI
prints it on one line and exits with code 2.
"""


class InputError(ValueError):
    """Bad user input: a file, record or argument that gnnspec refuses, with the reason."""
