"""Errors the assistant raises, translated at the edge (CLI line, calm chat message).

AssistantError
 ├── CorpusError         a corpus file is unreadable, malformed or missing a required part
 ├── IndexMissing        no published index yet
 ├── IndexInvalid        the index exists but lacks what answers need (e.g. safety text)
 ├── ModelMismatch       the index was built with another embedding model
 ├── ModelUnavailable    the embedding model cannot be loaded
 ├── StoreUnavailable    the vector store cannot be reached or read
 ├── IngestLocked        another ingest holds the writer lock
 ├── EvalFileError       a staff test set is malformed
 └── TeachRefused        a teach action would break something; nothing was changed
"""


class AssistantError(Exception):
    """Base class: the message names the problem and, where there is one, the fix."""


class CorpusError(AssistantError):
    pass


class IndexMissing(AssistantError):
    pass


class IndexInvalid(AssistantError):
    pass


class ModelMismatch(AssistantError):
    pass


class ModelUnavailable(AssistantError):
    pass


class StoreUnavailable(AssistantError):
    pass


class IngestLocked(AssistantError):
    pass


class EvalFileError(AssistantError):
    pass


class TeachRefused(AssistantError):
    pass
