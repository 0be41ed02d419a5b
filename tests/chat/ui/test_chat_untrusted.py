"""AppTest: what the chat page sends to the browser for untrusted text (answers, prompts,
titles, model names, server errors) carries no markdown image (issue 10, item 3)."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.fakes.openai_server import FakeOpenAI, Script
from webapp.chat.messages import display_title
from webapp.settings import get_settings
from webapp.store import title_from_prompt
from webapp.ui.safe_markdown import safe_markdown
from webapp.ui.text import literal

PAGE = str(Path(__file__).resolve().parents[3] / "webapp" / "chat" / "ui" / "page.py")
U = "http://127.0.0.2:9/img?d=secret"
MODEL = f"![m]({U})"


@pytest.fixture
def page(monkeypatch, tmp_path):
    def make(url):
        monkeypatch.setenv("LLM_URL", url)
        monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'chat.db'}")
        get_settings.cache_clear()
        at = AppTest.from_file(PAGE, default_timeout=30)
        at.run()
        return at

    yield make
    get_settings.cache_clear()


def drawn(at) -> list[str]:
    """Every markdown string the page drew, wherever it is."""
    groups = (at.markdown, at.caption, at.title, at.subheader, at.error, at.warning, at.info)
    texts = [e.value for group in groups for e in group]
    return texts + [b.label for b in at.button]


def test_answer_prompt_title_and_model_name_draw_no_image(page):
    answer = ["Look: ", f"![x]({U})", " and ![r][r]\n\n", f"[r]: {U}\n\n`![code]({U})`"]
    prompt = f"hi ![p]({U}) there"
    with FakeOpenAI(model=MODEL) as fake:
        fake.set_script(Script(tokens=answer, reasoning=[f"think ![t]({U})"]))
        at = page(fake.url)
        at.chat_input[0].set_value(prompt).run()
    assert not at.exception
    user, bot = at.chat_message[0], at.chat_message[1]
    assert [md.value for md in user.markdown] == [safe_markdown(prompt)]
    assert f"[image: x]({U})" in bot.markdown[-1].value
    assert f"`![code]({U})`" in bot.markdown[-1].value  # code is left alone
    assert at.subheader[0].value == display_title(title_from_prompt(prompt))
    assert display_title(title_from_prompt(prompt)) in [b.label for b in at.sidebar.button]
    assert any(c.value.startswith(f"Model: **{literal(MODEL)}**") for c in at.sidebar.caption)
    assert any(literal(MODEL) in c.value for c in bot.caption)  # the stats line
    leaks = [t for t in drawn(at) if "![" in t.replace("`![code]", "")]
    assert not leaks


def test_server_error_quoting_an_image_draws_none(page):
    with FakeOpenAI(model="fake-chat") as fake:
        fake.set_script(Script(status=400, error_message=f"bad ![e]({U}) input"))
        at = page(fake.url)
        at.chat_input[0].set_value("hello").run()
    error = at.chat_message[1].error[0].value
    assert f"[image: e]({U})" in error and "![" not in error
