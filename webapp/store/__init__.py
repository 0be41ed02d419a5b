"""The conversation store: users' conversations and messages in SQLite or PostgreSQL.

Public API: ``ConversationStore`` and the records and errors re-exported here.
"""

from webapp.store.errors import (
    ConversationNotFound,
    GenerationInProgress,
    LimitExceeded,
    PromptTooLong,
    RateLimited,
    StoreError,
    StoreUnavailable,
    TooManyConversations,
)
from webapp.store.records import (
    DEFAULT_TITLE,
    Conversation,
    ConversationSummary,
    Message,
    is_valid_conversation_id,
    title_from_prompt,
)
from webapp.store.repository import ConversationStore

__all__ = [
    "DEFAULT_TITLE",
    "Conversation",
    "ConversationNotFound",
    "ConversationStore",
    "ConversationSummary",
    "GenerationInProgress",
    "LimitExceeded",
    "Message",
    "PromptTooLong",
    "RateLimited",
    "StoreError",
    "StoreUnavailable",
    "TooManyConversations",
    "is_valid_conversation_id",
    "title_from_prompt",
]
