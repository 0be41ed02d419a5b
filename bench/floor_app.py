"""A what-if page for ``bench.first_token --floor`` (not the product): the least a Streamlit
chat page can do between Enter and the first token on screen.

``streamlit run bench/floor_app.py`` with ``LLM_URL`` (and ``LLM_NAME``, default
``fake-chat``) draws a chat input; a message is sent at once with the ``openai`` client (the
request before anything is drawn, as the product does), and the answer is drawn in a chat
bubble as it arrives (its first piece at once, then at most 10 times a second, the product's
cadence), then the stats caption the bench waits for. Nothing else: no identity, no limits,
no history, no saving, no sidebar, no LangChain. Timing it like the product shows how much
of the product's first-token overhead is Streamlit's own (the browser's work on Enter, the
script run, the websocket) and how much is the product's.
"""

import os
import time

import streamlit as st
from openai import OpenAI

REDRAW_EVERY_S = 0.1  # the product's cadence (webapp/chat/ui/answer.py)


@st.cache_resource(show_spinner=False)
def _client() -> OpenAI:
    return OpenAI(base_url=os.environ["LLM_URL"].rstrip("/") + "/v1", api_key="bench")


st.set_page_config(page_title="floor", layout="wide")
ss = st.session_state
ss.setdefault("messages", [])
prompt = ss.get("prompt")
stream = None
if prompt:  # the request first, as the product sends it before drawing the page
    stream = _client().chat.completions.create(
        model=os.environ.get("LLM_NAME", "fake-chat"),
        messages=[{"role": "user", "content": prompt}],
        max_tokens=int(os.environ.get("DEFAULT_MAX_TOKENS", "1024")),
        stream=True,
    )
for m in ss.messages:
    with st.chat_message(m["role"]):
        st.markdown(m["content"])
if stream is not None:
    ss.messages.append({"role": "user", "content": prompt})
    with st.chat_message("user"):
        st.markdown(prompt)
    with st.chat_message("assistant"):
        place, text, drawn, pieces = st.empty(), "", float("-inf"), 0
        for chunk in stream:
            piece = chunk.choices[0].delta.content if chunk.choices else None
            if not piece:
                continue
            text, pieces = text + piece, pieces + 1
            if time.monotonic() - drawn >= REDRAW_EVERY_S:
                place.markdown(text)
                drawn = time.monotonic()
        place.markdown(text)
        st.caption(f"{pieces} tokens · floor")
    ss.messages.append({"role": "assistant", "content": text})
st.chat_input("Message the model", submit_mode="disable", key="prompt")
