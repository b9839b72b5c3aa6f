"""The insight routes: gap topics and the weekly report through the service, with auth."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from test_gaps import ROCKET, WEATHER
from test_server import agent, error, send, served

from autoreply.settings import Settings


@pytest.fixture
def logged(settings: Settings) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """An app whose gap log holds two topics' worth of questions, and an agent's token."""
    with served(settings) as client:
        for i, text in enumerate(ROCKET + WEATHER):
            reply = send(client, text, user_id=f"u{i}", conversation_id=f"c{i}")
            assert reply["gap_id"] is not None, reply
        yield client, agent(client, "pm")


def test_gap_topics_need_a_token(logged: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = logged
    error(client.get("/v1/insights/gaps"), 401, "unauthorized")
    error(client.get("/v1/insights/report"), 401, "unauthorized")
    wrong = {"Authorization": "Bearer ar_not-a-token"}
    error(client.get("/v1/insights/gaps", headers=wrong), 401, "unauthorized")


def test_gap_topics_are_clustered_and_listed(logged: tuple[TestClient, dict[str, str]]) -> None:
    """Listing clusters the new gaps first: the rocket and weather questions become two
    topics, each with a representative question, keywords and a draft FAQ entry."""
    client, pm = logged
    none_yet = client.get("/v1/insights/gaps", params={"update": False}, headers=pm)
    assert none_yet.status_code == 200 and none_yet.json() == []
    topics = client.get("/v1/insights/gaps", headers=pm).json()
    assert len(topics) == 2 and {t["kind"] for t in topics} == {"new"}
    assert "centroid" not in topics[0]
    by_word = {w: t for t in topics for w in t["keywords"]}
    rocket, weather = by_word["rocket"], by_word["weather"]
    assert rocket["representative"] in ROCKET and rocket["size"] == len(ROCKET)
    detail = client.get(f"/v1/insights/gaps/{weather['id']}", headers=pm).json()
    assert detail["suggestion"]["needs_answer"] is True
    assert set(detail["examples"]) == set(WEATHER)
    assert detail["suggestion"]["question"] in WEATHER
    missing = error(client.get("/v1/insights/gaps/999999", headers=pm), 404, "not_found")
    assert str(rocket["id"]) in missing["message"]
    dismissed = client.get("/v1/insights/gaps", params={"status": "dismissed"}, headers=pm)
    assert dismissed.json() == []


def test_weekly_report_in_json_markdown_and_html(
    logged: tuple[TestClient, dict[str, str]],
) -> None:
    """This week's report counts the questions and lists both topics; md and html render
    the same report; a malformed week is a 422 naming the expected form."""
    client, pm = logged
    report = client.get("/v1/insights/report", headers=pm).json()
    assert report["volumes"]["questions"] == len(ROCKET + WEATHER)
    assert report["gaps"] == len(ROCKET + WEATHER) and len(report["topics"]) == 2
    md = client.get("/v1/insights/report", params={"format": "md"}, headers=pm)
    assert md.headers["content-type"].startswith("text/markdown")
    assert report["week"]["label"] in md.text
    html = client.get("/v1/insights/report", params={"format": "html"}, headers=pm)
    assert html.headers["content-type"].startswith("text/html") and "<svg" in html.text
    bad = error(client.get("/v1/insights/report?week=47", headers=pm), 422, "invalid")
    assert "W" in bad["message"]
