"""The conversation store: users' conversations and messages in SQLite or PostgreSQL.

Public API: ``ConversationStore`` and the records and errors re-exported here.
How the chat page uses it (one store per process, e.g. ``st.cache_resource``)::

    store = ConversationStore(settings.database_url)   # no I/O yet
    store.migrate()                                    # or let first use do it
    limits = UsageLimits.from_settings(store, settings)  # webapp.chat.limits
    owner = resolve_owner(user_info, session_browser_key)  # webapp.access.identity
    store.mark_interrupted()                           # answers whose process died
    conv = store.create_conversation(owner.key, max_conversations=limits.max_conversations)
    limits.check_prompt(prompt); limits.record_message(owner.key)
    store.add_message(owner.key, conv.id, "user", prompt)
    with limits.generation(owner.key) as lease:
        mid = store.add_message(owner.key, conv.id, "assistant", "", "streaming")
        ... while streaming: store.update_message(owner.key, mid, content=text)
        ... at the end: store.update_message(owner.key, mid, content=text, status=..., meta=...)
"""

from webapp.store.engine import PoolOptions
from webapp.store.errors import (
    ConversationNotFound,
    GenerationInProgress,
    LimitExceeded,
    ModelBusy,
    PromptTooLong,
    RateLimited,
    SettingsTooLarge,
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
    "ModelBusy",
    "PromptTooLong",
    "RateLimited",
    "SettingsTooLarge",
    "StoreError",
    "StoreUnavailable",
    "PoolOptions",
    "TooManyConversations",
    "is_valid_conversation_id",
    "title_from_prompt",
]
