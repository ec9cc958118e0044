def test_anonymous_request_to_a_page_is_challenged(anon):
    response = anon.get("/emails", status=401)
    assert response.headers["WWW-Authenticate"].lower().startswith("basic")
