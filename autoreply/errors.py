"""The one error tree of autoreply. Every message names the place and says what to do.

AutoreplyError
 ├── ConfigError            a setting or option is wrong
 ├── KnowledgeError         the knowledge base cannot be used
 │    ├── FAQFormatError    one problem at file:line, field
 │    └── KnowledgeInvalid  several FAQFormatErrors, reported together
 ├── EncoderError           the encoder cannot load or encode
 ├── IndexStateError        the vector index is missing, stale or corrupt
 ├── StoreError             the database refused an operation
 │    ├── NotFoundError     no such ticket, message, agent, ...
 │    ├── OwnershipError    the agent does not own the ticket
 │    └── ConflictError     the ticket is in a state that forbids the action
 └── QuestionFormatError    a labelled question file is malformed (eval)
"""

from __future__ import annotations

from pathlib import Path


class AutoreplyError(Exception):
    """Base of every error autoreply raises on purpose."""


class ConfigError(AutoreplyError):
    """A setting, option or environment variable has a value autoreply cannot use."""


class KnowledgeError(AutoreplyError):
    """The knowledge base cannot be loaded or used."""


class FAQFormatError(KnowledgeError):
    """One problem in one knowledge file, located by file, line (or row) and field."""

    def __init__(
        self,
        path: str | Path,
        *,
        line: int | None = None,
        field: str | None = None,
        problem: str,
        hint: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.problem = problem
        self.hint = hint
        super().__init__(self.render())

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}" if self.line is not None else self.path

    def render(self) -> str:
        text = f"{self.location}: "
        text += f"field '{self.field}' {self.problem}" if self.field else self.problem
        if self.hint:
            text += f": {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.path,
            "line": self.line,
            "field": self.field,
            "problem": self.problem,
            "hint": self.hint,
            "message": self.render(),
        }


class KnowledgeInvalid(KnowledgeError):
    """Several problems found while loading a knowledge base; all are reported at once."""

    def __init__(self, problems: list[FAQFormatError]) -> None:
        self.problems = problems
        lines = [p.render() for p in problems]
        head = f"{len(problems)} problem(s) in the knowledge base:"
        super().__init__("\n".join([head, *("  " + line for line in lines)]))


class EncoderError(AutoreplyError):
    """The encoder could not be loaded or could not encode."""


class IndexStateError(AutoreplyError):
    """The vector index is missing, stale or corrupt."""


class StoreError(AutoreplyError):
    """The store could not carry out an operation."""


class NotFoundError(StoreError):
    """No such ticket, message, conversation, agent or candidate."""


class OwnershipError(StoreError):
    """An agent tried to act on a ticket that another agent owns."""


class ConflictError(StoreError):
    """The object is in a state that forbids the action (e.g. claiming a claimed ticket)."""


class QuestionFormatError(AutoreplyError):
    """A labelled question file for evaluation is malformed at file:line."""

    def __init__(self, path: str | Path, *, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")
