"""Sign-in where an OpenID Connect provider is configured: every page asks for it before it shows
anything, and the signed-in user's name is what the audit log records for a case they add.
Without a provider the pages work as before. (No provider runs here: AppTest plays the signed-in
or signed-out user, as Streamlit's identity cookie would.)"""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.library.store import open_library
from tests.helpers import ROOT

PAGES = sorted(str(p) for p in (ROOT / "pages").glob("*.py"))
LIBRARY_PAGE = str(ROOT / "pages" / "library.py")
PROVIDER = {
    "client_id": "dashboard",
    "client_secret": "not-a-secret",
    "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
}


def _with_auth(page: str, *, providers: dict[str, dict[str, str]] | None = None) -> AppTest:
    at = AppTest.from_file(page, default_timeout=120)
    section: dict[str, object] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s" * 32}
    section.update(providers if providers is not None else PROVIDER)
    at.secrets["auth"] = section
    return at


@pytest.mark.parametrize("page", PAGES, ids=lambda p: Path(p).stem)
def test_every_page_asks_a_visitor_to_sign_in_and_shows_nothing_else(page: str, library_copy: Path) -> None:
    at = _with_auth(page)
    at.user = {"is_logged_in": False}
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert [t.value for t in at.title] == ["COVID-19 chest imaging dashboard"]
    assert "sign in" in at.info[0].value.lower()
    # None of the page's own content: no uploads, inputs, tables or figures.
    assert not at.get("file_uploader") and not at.text_input and not at.dataframe and not at.metric


def test_several_providers_get_one_button_each(library_copy: Path) -> None:
    at = _with_auth(LIBRARY_PAGE, providers={"google": PROVIDER, "microsoft": PROVIDER})
    at.user = {"is_logged_in": False}
    at.run()
    assert [b.label for b in at.button] == ["Sign in with google", "Sign in with microsoft"]


def _add_reviewed_upload(at: AppTest, chest_png: bytes) -> None:
    at.file_uploader(key="library_upload").set_value([("upload.png", chest_png, "image/png")])
    at.run()
    at.button(key="library_upload_add").click().run()
    assert not at.exception
    assert any("Added as a study of patient P-" in s.value for s in at.success)


def test_a_signed_in_user_sees_the_page_and_is_recorded_with_the_case_they_add(
    library_copy: Path, chest_png: bytes
) -> None:
    at = _with_auth(LIBRARY_PAGE)
    at.user = {"is_logged_in": True, "name": "Dr Ada Lovelace", "email": "ada@hospital.example"}
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Case library"]
    assert "Signed in as Dr Ada Lovelace" in [c.value for c in at.sidebar.caption]
    assert "Sign out" in [b.label for b in at.sidebar.button]
    _add_reviewed_upload(at, chest_png)
    latest = open_library(library_copy).audit_log(limit=1)[0]
    assert (latest.user, latest.action) == ("Dr Ada Lovelace", "add-case")
    # The page's audit log shows it first.
    (shown,) = [d.value for d in at.dataframe if "Who" in d.value.columns]
    assert list(shown.iloc[0][["Who", "Action", "Patient"]]) == ["Dr Ada Lovelace", "add-case", latest.pseudonym]


def test_without_a_provider_the_page_works_and_records_the_server_account(library_copy: Path, chest_png: bytes) -> None:
    at = AppTest.from_file(LIBRARY_PAGE, default_timeout=120).run()
    assert not at.exception
    assert "Sign in" not in [b.label for b in at.button]
    _add_reviewed_upload(at, chest_png)
    assert open_library(library_copy).audit_log(limit=1)[0].user == f"local:{getpass.getuser()}"
