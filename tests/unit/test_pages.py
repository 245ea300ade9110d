"""The approver's pages: everything a requester wrote is text, and the form carries the link."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from approval_api import pages
from approvals.models import Approval, Outcome, Policy, Status, Vote
from tests.unit.samples import TOKEN, sample_approval

NOW = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
SCRIPT = '<script>alert("x")</script>'
ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
FIELDS = {"approver": "alice@example.com", "expires": "1904000000", "kid": "0a1b2c3d", "sig": "c2lnbmF0dXJl"}


def approval(**changes: Any) -> Approval:
    return sample_approval(
        NOW - timedelta(hours=1), timedelta(hours=4), changes.pop("request", {}), **changes
    )


def page(approval_: Approval | None = None, fields: dict[str, str] | None = None, **options: Any) -> str:
    return pages.approval_page(
        approval_ or approval(),
        "alice@example.com",
        FIELDS if fields is None else fields,
        NOW,
        reason_required=options.pop("reason_required", True),
        **options,
    )


class Form(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[dict[str, str]] = []
        self.hidden: dict[str, str] = {}
        self.buttons: list[str] = []
        self.textareas: list[str] = []
        self.scripts = 0
        self.styles: list[str] = []
        self._in_style = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(values)
        elif tag == "input" and values.get("type") == "hidden":
            self.hidden[values["name"]] = values.get("value", "")
        elif tag == "button":
            self.buttons.append(values.get("value", ""))
        elif tag == "textarea":
            self.textareas.append(values.get("name", ""))
        elif tag == "script":
            self.scripts += 1
        elif tag == "style":
            self._in_style = True
            self.styles.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles[-1] += data


@pytest.mark.parametrize(
    "request_fields",
    [
        {"title": SCRIPT},
        {"description": SCRIPT},
        {"requester": SCRIPT},
        {"details": {"note": SCRIPT}},
        {"details": {SCRIPT: "value"}},
        {"details": {"nested": {"html": SCRIPT}}},
    ],
)
def test_requester_text_is_escaped_on_the_approval_page(request_fields: dict[str, Any]) -> None:
    html = page(approval(request=request_fields))
    assert SCRIPT not in html
    assert "<script" not in html.lower()
    assert Form(html).scripts == 0
    assert "&lt;script&gt;" in html


def test_escaping_in_every_place_at_once() -> None:
    html = page(
        approval(
            request={
                "title": SCRIPT,
                "description": SCRIPT,
                "requester": SCRIPT,
                "details": {SCRIPT: SCRIPT},
            }
        )
    )
    assert html.count(ESCAPED) >= 5  # title tag, heading, requester, description, detail key and value
    assert "<script" not in html.lower()


def test_attribute_breaking_text_is_escaped() -> None:
    evil = '" autofocus onfocus="alert(1)'
    html = page(fields={**FIELDS, "sig": evil, "approver": "'><img src=x>"})
    assert 'onfocus="alert(1)' not in html
    assert "<img" not in html
    form = Form(html)
    assert form.hidden["sig"] == evil  # what the browser posts back is exactly what it was given
    assert form.hidden["approver"] == "'><img src=x>"


def test_votes_and_comments_are_escaped() -> None:
    vote = Vote(approver="bob@example.com", outcome=Outcome.APPROVED, comment=SCRIPT, at=NOW)
    html = page(approval(votes={"bob@example.com": vote}))
    assert "<script" not in html.lower()
    assert ESCAPED in html


def test_form_posts_the_signed_fields_back_to_the_same_approval() -> None:
    form = Form(page())
    assert len(form.forms) == 1
    assert form.forms[0]["method"] == "post"
    assert form.forms[0]["action"] == approval().approval_id  # relative: the approval's own address
    assert form.hidden == FIELDS
    assert form.buttons == ["approve", "reject"]
    assert form.textareas == ["comment"]


def test_comment_label_says_whether_a_reason_is_required() -> None:
    assert "(required to reject)" in page(reason_required=True)
    assert "(optional)" in page(reason_required=False)


def test_notice_and_typed_comment_are_shown_again_escaped() -> None:
    html = page(notice="Say why <b>", comment="half <i>typed")
    assert "Say why &lt;b&gt;" in html
    assert "half &lt;i&gt;typed</textarea>" in html


def test_page_shows_the_request() -> None:
    html = page(approval(request={"policy": "quorum", "quorum": 1}))
    assert "<h1>Deploy checkout 2.4</h1>" in html
    assert "ci@example.com" in html
    assert "you are <strong>alice@example.com</strong>" in html
    assert "Faster checkout." in html
    assert '<th scope="row">service</th><td>checkout</td>' in html
    assert '<th scope="row">version</th><td>24</td>' in html
    assert "in 3 hours" in html
    assert "2030-05-06 10:08 UTC" in html
    assert "1 of 2 approvals needed" in html
    assert "not yet decided" in html


def test_settled_page_shows_the_outcome_instead_of_buttons() -> None:
    vote = Vote(approver="bob@example.com", outcome=Outcome.REJECTED, comment="not now", at=NOW)
    settled = approval(status=Status.REJECTED, votes={"bob@example.com": vote}, decided_at=NOW)
    html = page(settled)
    form = Form(html)
    assert form.forms == []
    assert form.buttons == []
    assert 'class="badge rejected"' in html
    assert "not now" in html


def test_approver_who_voted_sees_no_buttons() -> None:
    vote = Vote(approver="alice@example.com", outcome=Outcome.APPROVED, at=NOW)
    html = page(approval(request={"policy": "all"}, votes={"alice@example.com": vote}))
    assert Form(html).forms == []
    assert "waiting for decision" in html


def test_expired_page_has_no_buttons() -> None:
    html = page(approval(expires_at=NOW - timedelta(seconds=1)))
    assert Form(html).forms == []
    assert 'class="badge expired"' in html


def test_no_token_on_the_page() -> None:
    assert TOKEN not in page()


def test_message_page_escapes_everything() -> None:
    vote = Vote(approver="alice@example.com", outcome=Outcome.APPROVED, comment=SCRIPT, at=NOW)
    html = pages.message_page(
        SCRIPT,
        SCRIPT,
        kind="error",
        approval=approval(request={"title": SCRIPT, "requester": SCRIPT}),
        vote=vote,
        now=NOW,
    )
    assert "<script" not in html.lower()
    assert html.count("&lt;script&gt;") >= 5


def test_message_page_without_an_approval() -> None:
    html = pages.message_page("No such approval", "There is no approval at this address.", kind="error")
    assert "<h1>No such approval</h1>" in html
    assert 'role="alert"' in html


def test_security_headers() -> None:
    headers = pages.SECURITY_HEADERS
    csp = headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert directives["base-uri"] == "'none'"
    assert directives["style-src"].startswith("'sha256-")
    assert "script-src" not in directives  # falls back to default-src 'none': no script at all
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cache-Control"] == "no-store"


def test_the_page_states_the_same_referrer_policy_as_its_header() -> None:
    """A <meta name="referrer"> overrides the header: a stricter one would make the
    browser post ``Origin: null``, which the API refuses."""
    for html in (page(), pages.message_page("Done", "Thank you.")):
        assert f'<meta name="referrer" content="{pages.SECURITY_HEADERS["Referrer-Policy"]}">' in html


@pytest.mark.parametrize(
    "html",
    [
        pytest.param(page(), id="approval"),
        pytest.param(pages.message_page("Done", "Thank you."), id="message"),
    ],
)
def test_the_style_csp_hash_matches_the_style_the_browser_sees(html: str) -> None:
    """A browser hashes the text inside <style> as it is sent; if it differs from the pinned
    hash, the policy blocks the page's whole style."""
    styles = Form(html).styles
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    csp = pages.SECURITY_HEADERS["Content-Security-Policy"]
    assert f"style-src 'sha256-{digest}'" in csp
    assert re.search(r"<style>[^<]*</style>", html)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "now"),
        (0, "now"),
        (30, "in less than a minute"),
        (60, "in 1 minute"),
        (150, "in 2 minutes"),
        (3 * 3600, "in 3 hours"),
        (86_400, "in 1 day"),
        (10 * 86_400, "in 10 days"),
    ],
)
def test_humanize_until(seconds: int, text: str) -> None:
    assert pages.humanize_until(NOW + timedelta(seconds=seconds), NOW) == text


@pytest.mark.parametrize(
    ("policy", "quorum", "text"),
    [
        (Policy.FIRST_RESPONSE, None, "the first decision settles it"),
        (Policy.ALL, None, "every approver must approve; any rejection rejects"),
        (Policy.QUORUM, 2, "2 of 2 approvals needed; rejected once that cannot be reached"),
    ],
)
def test_policy_text(policy: Policy, quorum: int | None, text: str) -> None:
    assert pages.policy_text(approval(request={"policy": policy, "quorum": quorum})) == text


def _luminance(hex_color: str) -> float:
    channels = [int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_text_colours_meet_wcag_aa_contrast() -> None:
    """Every text colour of the page's palette on the white page, and the buttons' white
    text on their fill, reach WCAG AA's 4.5:1 for normal text."""
    palette = dict(re.findall(r"--(ink|muted|ok|no): (#[0-9a-f]{6})", pages.CSS))
    assert set(palette) == {"ink", "muted", "ok", "no"}
    for name, colour in palette.items():
        assert _contrast(colour, "#ffffff") >= 4.5, name
    assert _contrast("#ffffff", palette["ok"]) >= 4.5  # the Approve button


def test_the_page_names_the_workflow_and_step_that_ask() -> None:
    html = page(approval())
    assert "Workflow <strong>approvals</strong>, step <strong>RequestApproval</strong>" in html


FIELD_REQUEST = {
    "fields": [
        {
            "name": "environment",
            "label": "Target <env>",
            "type": "choice",
            "options": ["staging", "prod <x>"],
        },
        {"name": "ticket", "label": "Ticket", "type": "text", "max_length": 12, "required": True},
        {"name": "replicas", "label": "Replicas", "type": "number", "min": 1, "max": 10},
        {"name": "backup", "label": "Backup checked", "type": "boolean", "required": True},
        {"name": "window", "label": "Window", "type": "date"},
    ]
}
FIELD_REQUEST_NAMES = ("environment", "ticket", "replicas", "backup", "window")


class Controls(HTMLParser):
    """The page's inputs and selects by id, and which ids a label names."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.controls: dict[str, dict[str, str]] = {}
        self.labelled: set[str] = set()
        self.reject: dict[str, str] = {}
        self._label_depth = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "label":
            self._label_depth += 1
            self.labelled.add(values.get("for", ""))
        elif tag in ("input", "select") and values.get("type") != "hidden":
            self.controls[values["id"]] = {"tag": tag, **values}
            if self._label_depth:
                self.labelled.add(values["id"])  # wrapped in its label
        elif tag == "button" and values.get("value") == "reject":
            self.reject = values

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._label_depth -= 1


def test_each_field_is_a_labelled_input_of_its_type_with_the_browsers_own_checks() -> None:
    html = page(approval(request=FIELD_REQUEST))
    found = Controls(html)
    assert set(found.controls) == {f"field-{n}" for n in FIELD_REQUEST_NAMES}
    assert set(found.controls) <= found.labelled
    kinds = {id_: (c["tag"], c.get("type", "")) for id_, c in found.controls.items()}
    assert kinds == {
        "field-environment": ("select", ""),
        "field-ticket": ("input", "text"),
        "field-replicas": ("input", "number"),
        "field-backup": ("input", "checkbox"),
        "field-window": ("input", "date"),
    }
    replicas = found.controls["field-replicas"]
    assert (replicas["min"], replicas["max"], replicas["inputmode"]) == ("1", "10", "decimal")
    assert found.controls["field-ticket"]["maxlength"] == "12"
    assert {id_ for id_, c in found.controls.items() if "required" in c} == {"field-ticket", "field-backup"}
    assert {c["name"] for c in found.controls.values()} == {f"data.{n}" for n in FIELD_REQUEST_NAMES}
    assert "formnovalidate" in found.reject  # a rejection may leave required answers empty
    assert "Target &lt;env&gt;" in html
    assert "prod &lt;x&gt;" in html
    # The unticked box still sends its field, so the form always carries the answers.
    assert '<input type="hidden" name="data.backup" value="false">' in html


def test_a_refused_answer_is_shown_again_as_typed_and_marked_on_its_field() -> None:
    typed = {"environment": "prod <x>", "ticket": '"><b>', "replicas": "11", "backup": "true"}
    html = page(
        approval(request=FIELD_REQUEST), notice="Replicas: at most 10.", typed=typed, invalid_field="replicas"
    )
    found = Controls(html)
    replicas = found.controls["field-replicas"]
    assert (replicas["value"], replicas["aria-invalid"]) == ("11", "true")
    assert 'id="field-replicas-error" class="field-error">Replicas: at most 10.</p>' in html
    assert replicas["aria-describedby"] == "field-replicas-error"
    assert found.controls["field-ticket"]["value"] == '"><b>'  # escaped in the attribute, read back whole
    assert "checked" in found.controls["field-backup"]
    assert "<option selected>prod &lt;x&gt;</option>" in html
    assert sum("aria-invalid" in c for c in found.controls.values()) == 1


def test_the_confirmation_shows_the_answers_recorded() -> None:
    vote = Vote(
        approver="alice@example.com",
        outcome=Outcome.APPROVED,
        at=NOW,
        data={"environment": "<prod>", "backup": True, "replicas": 3},
    )
    html = pages.message_page("Decision recorded", "Thank you.", approval=approval(), vote=vote, now=NOW)
    assert '<th scope="row">environment</th><td>&lt;prod&gt;</td>' in html
    assert '<th scope="row">backup</th><td>yes</td>' in html
    assert '<th scope="row">replicas</th><td>3</td>' in html
