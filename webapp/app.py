"""Entrypoint: page config and the router. Nothing else lives here."""

import streamlit as st

from webapp.settings import get_settings

settings = get_settings()
st.set_page_config(page_title=settings.app_title, page_icon="💬", layout="wide")

pages = []
if settings.app_mode in ("chat", "all"):
    pages.append(st.Page("views/chat.py", title="Chat", icon="💬", url_path="chat", default=True))
nav = st.navigation(pages)
nav.run()
