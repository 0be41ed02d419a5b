"""Entrypoint: page config and the router. Nothing else lives here."""

import sys
from pathlib import Path

import streamlit as st

# `streamlit run webapp/app.py` puts webapp/ on sys.path, not the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webapp.settings import get_settings  # noqa: E402

settings = get_settings()
st.set_page_config(page_title=settings.app_title, page_icon="💬", layout="wide")

pages = []
if settings.app_mode in ("chat", "all"):
    pages.append(st.Page("views/chat.py", title="Chat", icon="💬", url_path="chat", default=True))
nav = st.navigation(pages)
nav.run()
