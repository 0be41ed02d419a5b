"""Entrypoint: page config and the router. Nothing else lives here."""

import sys
from pathlib import Path

import streamlit as st

# `streamlit run webapp/app.py` puts webapp/ on sys.path, not the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webapp.access.errors import AuthError  # noqa: E402
from webapp.access.ui.identify import access_mode, identify  # noqa: E402
from webapp.admin import warmup  # noqa: E402
from webapp.settings import get_settings  # noqa: E402

settings = get_settings()
if settings.app_mode == "admin":
    warmup.preload(warmup.admin_imports(settings))  # once per process (webapp/admin/warmup.py)
st.set_page_config(page_title=settings.app_title, page_icon="💬", layout="wide")


def _admin_listed() -> bool:
    """Whether the menu lists the admin page: for admins, and always under LOCAL_ADMIN, so that
    a local run that cannot grant it (see the page) says why instead of hiding the page."""
    mode = access_mode(settings)
    if mode == "local":
        return True
    try:
        identify(settings, mode)
        return True
    except AuthError:
        return False


# The admin page is listed only for admins (and under LOCAL_ADMIN, see above); for anyone
# else it stays reachable by URL (hidden) and says why they cannot use it. APP_MODE=chat has
# no admin page at all.
pages = []
if settings.app_mode in ("chat", "all"):
    pages.append(
        st.Page(
            "chat/ui/page.py", title="Chat", icon=":material/chat:", url_path="chat", default=True
        )
    )
if settings.app_mode in ("admin", "all"):
    pages.append(
        st.Page(
            "admin/ui/page.py",
            title="Admin",
            icon=":material/admin_panel_settings:",
            url_path="admin",
            default=settings.app_mode == "admin",
            visibility="visible" if settings.app_mode == "admin" or _admin_listed() else "hidden",
        )
    )
nav = st.navigation(pages, position="sidebar" if len(pages) > 1 else "hidden")
nav.run()
