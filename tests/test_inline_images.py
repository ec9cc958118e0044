"""Pictures uploaded in the editor: the sanitizer keeps exactly a picture's data: URL as an image's
source, and nothing else of data:; each message carries them as inline parts its HTML points at."""

from __future__ import annotations

import base64
from email import message_from_bytes, policy

import pytest

from coretrack.sanitize import clean_html
from coretrack.sending.mime import MessageTemplate

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.mark.parametrize("kind", ["png", "jpeg", "gif", "webp"])
def test_a_pictures_data_url_is_kept_as_an_images_source(kind):
    html = f'<img src="data:image/{kind};base64,{PNG}" alt="logo">'
    assert clean_html(html) == html


@pytest.mark.parametrize("html", [
    f'<a href="data:image/png;base64,{PNG}">a link</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">a page</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+">',
    '<img src="data:text/html,<script>alert(1)</script>">',
    '<img src="data:image/png,not-base64">',
    f'<div style="background-image: url(data:image/png;base64,{PNG})">x</div>',
])
def test_every_other_data_url_is_removed(html):
    assert "data:" not in clean_html(html)


def test_each_distinct_picture_goes_once_as_an_inline_part_the_html_points_at():
    html = f'<p><img src="data:image/png;base64,{PNG}" alt="a"> and again <img src="data:image/png;base64,{PNG}"></p>'
    template = MessageTemplate(from_address="crm@example.test", from_name="CRM", subject="Hi", html=clean_html(html),
                               public_url=None)
    message = message_from_bytes(template.render("ann@example.test", "", None), policy=policy.default)
    related = message.get_body(preferencelist=("related",))
    assert related is not None and related.get_content_type() == "multipart/related"
    pictures = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert len(pictures) == 1 and pictures[0].get_content() == base64.b64decode(PNG)
    assert pictures[0]["Content-Disposition"].startswith("inline")
    body = message.get_body(preferencelist=("html",)).get_content()
    assert body.count(f'src="cid:{pictures[0]["Content-ID"].strip("<>")}"') == 2 and "data:" not in body
