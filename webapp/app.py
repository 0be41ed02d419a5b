"""Entrypoint: page config and the router. Nothing else lives here."""

import sys
from pathlib import Path

import streamlit as st

# `streamlit run webapp/app.py` puts webapp/ on sys.path, not the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webapp.auth import admin_access_mode  # noqa: E402
from webapp.settings import get_settings  # noqa: E402

settings = get_settings()
st.set_page_config(page_title=settings.app_title, page_icon="💬", layout="wide")


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets.toml at all
        return False


# The admin page is listed only when an admin login exists; otherwise it stays reachable
# by URL (hidden) and explains how to turn it on. APP_MODE=chat has no admin page at all.
admin_on = admin_access_mode(settings, _oidc_configured()) != "off"
pages = []
if settings.app_mode in ("chat", "all"):
    pages.append(st.Page("views/chat.py", title="Chat", icon="💬", url_path="chat", default=True))
if settings.app_mode in ("admin", "all"):
    pages.append(
        st.Page(
            "views/admin.py",
            title="Admin",
            icon="🛠️",
            url_path="admin",
            default=settings.app_mode == "admin",
            visibility="visible" if admin_on or settings.app_mode == "admin" else "hidden",
        )
    )
nav = st.navigation(pages, position="sidebar" if len(pages) > 1 else "hidden")
nav.run()
