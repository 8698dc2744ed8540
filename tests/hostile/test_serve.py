"""Issue 18 class 10: the server's edges. One token, never blank, never taken from a second parameter, header or
cookie, compared in constant time; every bad request to the page's API answered 4xx with an error in words, never
500 (the app runs with its safety net, but the tests count any 500 as a failure); a damaged or tampered job list
on disk never stops the server nor makes it touch a file outside its own folder."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("starlette")
from serve_helpers import AUTH, TOKEN  # tests/ is on sys.path
from starlette.testclient import TestClient

from realesr.errors import UsageError
from realesr.serve.app import create_app, file_model
from realesr.serve.security import COOKIE_PREFIX

BASE = "http://127.0.0.1:7860"
COOKIE = f"{COOKIE_PREFIX}7860"


@pytest.fixture
def client(weights, tmp_path):
    app = create_app([file_model(weights)], token=TOKEN, allow_download=False, work_dir=tmp_path / "work")
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        c.app = app
        yield c


def words(r, *status: int) -> str:
    """The refusal's message: a 4xx listed in ``status``, JSON {"error": "<words>"}."""
    assert r.status_code in status, (r.status_code, r.text[:300])
    message = r.json()["error"]
    assert isinstance(message, str) and len(message) > 10 and "Traceback" not in message
    return message


def animated_gif(frames: int = 5) -> bytes:
    images = [Image.new("RGB", (16, 12), (i * 40, 0, 0)) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=100)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ the token


@pytest.mark.parametrize(
    "query", [f"token={TOKEN}&token=evil-token-1", f"token=evil-token-1&token={TOKEN}", f"token={TOKEN}&token={TOKEN}"]
)
def test_a_token_given_twice_in_the_address_is_refused_and_stores_nothing(client, query):
    r = client.get(f"/?{query}", follow_redirects=False)
    assert r.status_code == 400 and "set-cookie" not in r.headers
    assert "more than once" in r.json()["error"]


def test_the_cookie_holds_the_servers_token_never_the_clients_text(client):
    r = client.get(f"/?token={TOKEN}", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["set-cookie"].startswith(f"{COOKIE}={TOKEN};")
    client.cookies.clear()
    # A valid cookie does not let an address's wrong token through (the address wins, and is wrong): no new cookie.
    r = client.get("/?token=evil-token-1", headers={"Cookie": f"{COOKIE}={TOKEN}"}, follow_redirects=False)
    assert r.status_code == 401 and "set-cookie" not in r.headers


@pytest.mark.parametrize(
    "headers",
    [
        [("authorization", f"Bearer {TOKEN}"), ("authorization", "Bearer evil-token-1")],
        [("authorization", "Bearer evil-token-1"), ("authorization", f"Bearer {TOKEN}")],
        [("cookie", f"{COOKIE}={TOKEN}; {COOKIE}=evil-token-1")],
        [("cookie", f"{COOKIE}=evil-token-1; {COOKIE}={TOKEN}")],
    ],
)
def test_two_tokens_in_headers_or_cookies_are_refused(client, headers):
    r = client.get("/api/models", headers=headers)
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("given", ["", "Bearer", "Bearer ", "Bearer  ", "Basic " + TOKEN, f"Bearer {TOKEN}x"])
def test_an_empty_or_wrong_authorization_is_401(client, given):
    words(client.get("/api/models", headers={"Authorization": given}), 401)


def test_the_token_is_compared_in_constant_time(client, monkeypatch):
    import hmac

    from realesr.serve import security

    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    assert client.get("/api/models", headers=AUTH).status_code == 200
    assert client.get("/api/models", headers={"Authorization": "Bearer wrong-token-9"}).status_code == 401
    assert calls == [(TOKEN.encode(), TOKEN.encode()), (b"wrong-token-9", TOKEN.encode())]


@pytest.mark.parametrize(
    "token", ["", " ", "        ", "\t\n  \t  ", "short", "has space in it", "semi;colon;x", "é" * 10]
)
def test_a_blank_or_unusable_token_never_makes_an_app(weights, token):
    with pytest.raises(UsageError, match="token"):
        create_app([file_model(weights)], token=token)


@pytest.mark.parametrize(
    ("env", "args", "fragment"),
    [
        ({"REALESR_TOKEN": "          "}, [], "$REALESR_TOKEN is blank"),
        ({"REALESR_TOKEN": ""}, [], "$REALESR_TOKEN is blank"),
        ({"REALESR_TOKEN": "tab\there-and-there"}, [], "$REALESR_TOKEN may only hold"),
        ({}, ["--token", "    "], "--token is blank"),
    ],
)
def test_the_command_refuses_a_blank_token_before_listening(realesr, tmp_path, env, args, fragment):
    r = realesr.start("serve", "--port", "0", "--no-keep", "--only", "--model", tmp_path / "w.pth", *args, env=env)
    result = r.finish(timeout=60)
    result.check(2, lines=1)
    assert fragment in result.err and result.out == ""


# ------------------------------------------------------------------------------------------ 4xx in words, never 500


def test_a_truncated_animated_gif_is_a_415_in_words(client):
    data = animated_gif()
    for cut in (100, len(data) // 2):
        r = client.post("/api/jobs", headers=AUTH, files={"file": ("anim.gif", data[:cut])})
        message = words(r, 415)
        assert message.startswith("anim.gif is damaged or cut short") and message.count("anim.gif") == 1


def test_a_gif_cut_inside_a_frame_fails_its_job_in_words(client):
    data = animated_gif()
    r = client.post("/api/jobs", headers=AUTH, files={"file": ("anim.gif", data[:60])})
    if r.status_code == 415:  # refused at the door: also in words
        words(r, 415)
        return
    job = r.json()
    for _ in range(400):
        job = client.get(f"/api/jobs/{job['id']}", headers=AUTH).json()
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert job["state"] == "failed" and job["error"].startswith("anim.gif")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/nothing", (404,)),
        ("GET", "/api/jobs/../../etc/passwd", (404,)),
        ("GET", "/api/jobs/%00", (404,)),
        ("GET", "/api/jobs/" + "a" * 5000, (404,)),
        ("GET", "/api/jobs/ZZZZZZZZZZZZZZZZ/result", (404,)),
        ("GET", "/api/jobs/0123456789abcdef/input", (404,)),
        ("DELETE", "/api/jobs/0123456789abcdef", (404,)),
        ("PUT", "/api/jobs", (405,)),
        ("PATCH", "/api/models", (405,)),
        ("POST", "/api/models", (405,)),
        ("DELETE", "/api/results.zip", (405,)),
        ("GET", "/api/results.zip", (409,)),
        ("GET", "/api/estimate?model=no-such-model", (400,)),
        ("GET", "/api/estimate?model=%00", (400,)),
        ("GET", "/static/..%2fapp.py", (404,)),
        ("GET", "/static/app.js%00", (404,)),
    ],
)
def test_bad_routes_and_methods_are_4xx_in_words(client, method, path, status):
    words(client.request(method, path, headers=AUTH), *status)


def _multipart(body: bytes, boundary: str = "xyz") -> dict:
    return {**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"}


PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Content-Type": "multipart/form-data"}, b"--x\r\n", (400,)),  # no boundary
        ({"Content-Type": "multipart/form-data; boundary=xyz"}, b"garbage without parts", (400,)),
        (
            {"Content-Type": "multipart/form-data; boundary=xyz"},
            b"--xyz\r\nContent-Disposition: form-data\r\n\r\nx",
            (400,),
        ),
        ({"Content-Type": "multipart/form-data; boundary=xyz"}, b"", (400,)),
        ({"Content-Type": "application/json"}, b'{"file": "x"}', (415,)),
        ({"Content-Type": "text/plain"}, b"hello", (415,)),
        ({}, b"", (415,)),
    ],
)
def test_malformed_uploads_are_4xx_in_words(client, headers, body, status):
    words(client.post("/api/jobs", headers={**AUTH, **headers}, content=body), *status)


def test_too_many_files_or_fields_are_400(client, small):
    two = [("file", ("a.png", small)), ("file", ("b.png", small))]
    words(client.post("/api/jobs", headers=AUTH, files=two), 400)
    many = {f"f{i}": "x" for i in range(40)}
    words(client.post("/api/jobs", headers=AUTH, files={"file": ("a.png", small)}, data=many), 400)


@pytest.mark.parametrize(
    "fields",
    [
        {"outscale": "nan"},
        {"outscale": "inf"},
        {"outscale": "-inf"},
        {"outscale": "1e400"},
        {"outscale": "0"},
        {"outscale": "2,5"},
        {"width": "1e3"},
        {"width": "0x10"},
        {"width": "-1"},
        {"width": "99999999999999999999999"},
        {"width": "100", "outscale": "2"},
        {"ext": "../png"},
        {"ext": "exe"},
        {"model": "../../etc/passwd"},
        {"model": "\x00"},
        {"denoise_strength": "0.5"},  # the tiny model has none
        {"denoise_strength": "nan"},
    ],
)
def test_bad_options_are_400_naming_the_field(client, small, fields):
    message = words(client.post("/api/jobs", headers=AUTH, files={"file": ("a.png", small)}, data=fields), 400)
    assert any(key in message for key in fields)


@pytest.mark.parametrize(
    "name", ["\x00.png", "a\nb.png", "..", "/", "\\\\server\\share\\x.png", "%2e%2e%2fx.png", "é" * 300 + ".png"]
)
def test_odd_file_names_are_taken_safely(client, small, name):
    r = client.post("/api/jobs", headers=AUTH, files={"file": (name, small)})
    assert r.status_code == 201, r.text
    job = r.json()
    assert "/" not in job["name"] and "\n" not in job["name"] and "\x00" not in job["name"]
    assert len(job["name"].encode()) <= 255


def test_a_part_without_a_file_name_is_no_file(client, small):
    # Multipart parsers take a part with filename="" as a plain field: the answer says what to send.
    assert "field named file" in words(client.post("/api/jobs", headers=AUTH, files={"file": ("", small)}), 400)


def test_the_api_never_answers_500_to_an_undecodable_body(client):
    body = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="\xff\xfe.png"\r\n\r\n' + b"\xff" * 50
    r = client.post("/api/jobs", headers=_multipart(body), content=body + b"\r\n--xyz--\r\n")
    assert 400 <= r.status_code < 500, r.text


@pytest.fixture
def small() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 10), (40, 90, 200)).save(buf, "PNG")
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ the job list on disk


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"[1]",
        b'{"jobs": 1}',
        b'{"jobs": [1, "x", null]}',
        b"\xff\xfe not text",
        b'{"jobs": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
        b'{"jobs": [{"id": "0123456789abcdef", "state": "done", "created": NaN}]}',
    ],
)
def test_a_damaged_job_list_is_set_aside_and_the_server_starts(weights, tmp_path, capfd, content):
    work = tmp_path / "work"
    work.mkdir()
    (work / "jobs.json").write_bytes(content)
    app = create_app([file_model(weights)], token=TOKEN, work_dir=work)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        assert c.get("/api/jobs", headers=AUTH).json() == {"jobs": []}
    err = capfd.readouterr().err
    assert "jobs.json" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 3  # one line for the file or one per entry, never a traceback


def test_a_tampered_record_never_reaches_outside_its_folder(weights, tmp_path, capfd):
    outside = tmp_path / "precious.png"
    outside.write_bytes(PNG + b"keep me")
    work = tmp_path / "work"
    (work / "0123456789abcdef").mkdir(parents=True)
    record = {
        "id": "0123456789abcdef",
        "name": "x.png",
        "state": "done",
        "model": "tiny",
        "ext": "keep",
        "input_bytes": 1,
        "input_size": [1, 1],
        "created": time.time(),
        "upload": "../../precious.png",
        "result": "../../precious.png",
    }
    (work / "jobs.json").write_text(json.dumps({"jobs": [record, {**record, "id": "../../../tmp"}]}))
    app = create_app([file_model(weights)], token=TOKEN, work_dir=work)
    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        assert c.get("/api/jobs", headers=AUTH).json() == {"jobs": []}
        words(c.get("/api/jobs/0123456789abcdef/result", headers=AUTH), 404)
        words(c.get("/api/results.zip", headers=AUTH), 409)
    assert outside.read_bytes() == PNG + b"keep me"
    err = capfd.readouterr().err
    assert err.count("is skipped") == 2 and "Traceback" not in err


def test_the_page_files_are_all_there(client):
    for name in ("app.js", "style.css", "favicon.svg"):
        assert client.get(f"/static/{name}", headers=AUTH).status_code == 200
    icon = client.get("/favicon.ico")  # without the token too: the 401 page asks for it
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert Image.open(io.BytesIO(icon.content)).format == "ICO"
    assert Path(__file__).exists()
