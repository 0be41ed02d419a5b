"""Test page: every untrusted markdown case as the app draws it (through safe_markdown), in
a chat message and in an alert. The cases come from the JSON file named by MARKDOWN_CASES."""

import json
import os
from pathlib import Path

import streamlit as st

from webapp.ui.safe_markdown import safe_markdown

for text in json.loads(Path(os.environ["MARKDOWN_CASES"]).read_text()):
    with st.chat_message("assistant"):
        st.markdown(safe_markdown(text))
    st.error(safe_markdown(text))
st.caption("All cases drawn.")
