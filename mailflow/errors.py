"""The exceptions mailflow raises, in one tree.

    MailflowError                  anything mailflow itself refuses or cannot do
     +-- ConfigError (ValueError)  a config file or MAILFLOW_* variable is wrong;
     |                             the message names the key, the file and what is allowed
     +-- SchemaError               the database is not at the schema this code needs;
     |                             the message names the command that fixes it
     +-- SpoolError (OSError)      a message could not be made durable; the sender must retry
     +-- FilesUnavailable (OSError) the [files] dir takes no file or is not there (a
     |                             full disk, a mount gone); the work waits, no try counted
     +-- NotFound (LookupError)    a case, token or message named by a person does not exist
     +-- ActionRefused             a command or action is not allowed in the case's state
     +-- UsageError (ValueError)   a command-line argument that cannot be used as given
     +-- UnparseableMessage        the bytes are not a message we can read; kept, never answered
     +-- PermanentFailure          an outgoing email can never be delivered as it is (a 5xx)
     +-- ServiceFailed             `mailflow run` stopped by itself: a part it cannot run
                                   without ended (the worker processes' supervisor)

Foreign exceptions (tomllib, pydantic, SQLAlchemy, OSError from the disk) are
converted at the module that talks to the library, with ``raise ... from``.
"""

from __future__ import annotations


class MailflowError(Exception):
    """Base of every error mailflow raises on purpose."""


class ConfigError(MailflowError, ValueError):
    """The configuration cannot be used as it is."""


class SchemaError(MailflowError):
    """The database schema is missing or behind this version of mailflow."""


class SpoolError(MailflowError, OSError):
    """A message could not be stored durably; nothing was accepted."""


class FilesUnavailable(MailflowError, OSError):
    """The folder of stored files cannot be used now; nothing is wrong with
    the message or the case."""

    def __str__(self) -> str:
        return str(self.strerror)  # names the folder and what failed


class NotFound(MailflowError, LookupError):
    """Something a person named does not exist."""


class ActionRefused(MailflowError):
    """An action that the case's current state does not allow."""


class UsageError(MailflowError, ValueError):
    """A command-line argument that cannot be used as given."""


class UnparseableMessage(MailflowError):
    """The bytes are not a message we can read. ``reason`` says why in
    English, for the record and the log; ``why`` names it, and ``facts``
    are its numbers, for the administrators' email, which says it in their
    language (templates/mail/_unreadable.j2, the same English)."""

    def __init__(self, why: str, reason: str, **facts: object) -> None:
        super().__init__(reason)
        self.why = why
        self.reason = reason
        self.facts = facts


class PermanentFailure(MailflowError):
    """The message can never be delivered as it is."""


class ServiceFailed(MailflowError):
    """`mailflow run` stopped by itself: a part it cannot run without ended."""
