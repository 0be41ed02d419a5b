"""Test page: the admin usage section on its own (the admin page draws it among its other
sections), on DATABASE_URL, with GPU_HOURLY_PRICE_USD and the pool's GPUs in USAGE_GPUS."""

import os

import streamlit as st

from webapp.admin.ui.usage import usage_section
from webapp.settings import get_settings
from webapp.store import ConversationStore

settings = get_settings()


@st.cache_resource
def _store(database_url: str) -> ConversationStore:
    return ConversationStore(database_url)


usage_section(_store(settings.database_url), settings, gpus=int(os.environ["USAGE_GPUS"]))
st.caption("Usage page drawn.")
