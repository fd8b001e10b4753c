"""Where an app is mounted, as Caddy has it: a matcher (`python /item/*`) selects
requests and the app sees their full path, SCRIPT_NAME (root_path) empty; under
`handle_path /item/*` Caddy strips the prefix and the app gets it as SCRIPT_NAME
(root_path), so the URLs it builds carry it; `script_name` sets it explicitly."""

import pytest

import app_requirements as reqs
from support import app_dir, python_block

PATHS = app_dir("paths")

INTERFACES = {
    "wsgi": dict(module_wsgi="paths_app:wsgi"),
    "asgi": dict(module_asgi="paths_app:asgi"),
}


def where(info):
    """(mount prefix, full path) as the app reports them, for WSGI and ASGI alike."""
    if "script_name" in info:
        return info["script_name"], info["script_name"] + info["path_info"]
    return info["root_path"], info["path"]


def block(matcher, interface, strip_prefix, **options):
    spec = INTERFACES[interface]
    return python_block(
        matcher, spec.get("module_wsgi"), module_asgi=spec.get("module_asgi"),
        strip_prefix=strip_prefix, working_dir=PATHS, **options,
    )


@pytest.fixture(scope="module", params=sorted(INTERFACES))
def server(request, caddy_launcher):
    interface = request.param
    body = "\n".join(
        [
            block("/item/*", interface, strip_prefix=False),
            block("/mounted/*", interface, strip_prefix=True),
            block("/explicit/*", interface, strip_prefix=False, script_name="/explicit"),
            block("/renamed/*", interface, strip_prefix=True, script_name="/shop"),
        ]
    )
    caddy = caddy_launcher.start(body)
    yield interface, caddy
    caddy.stop()


def test_under_a_matcher_the_app_sees_the_full_path_and_no_prefix(server):
    interface, caddy = server
    info = caddy.get_json("/item/abc/def")
    assert where(info) == ("", "/item/abc/def")
    if interface == "wsgi":
        assert info["path_info"] == "/item/abc/def"


def test_under_handle_path_the_stripped_prefix_is_the_mount_point(server):
    interface, caddy = server
    info = caddy.get_json("/mounted/abc/def")
    assert where(info) == ("/mounted", "/mounted/abc/def")
    assert info["link"] == "/mounted/next"
    if interface == "wsgi":
        assert info["path_info"] == "/abc/def"
        assert info["request_uri"] == "/mounted/abc/def"
    else:
        assert info["raw_path"] == "/mounted/abc/def"


def test_under_handle_path_an_encoded_path_keeps_its_bytes(server):
    interface, caddy = server
    info = caddy.get_json("/mounted/caf%C3%A9/a%20b")
    prefix, full = where(info)
    assert prefix == "/mounted"
    assert full.encode("latin-1" if interface == "wsgi" else "utf-8").decode("utf-8") == "/mounted/café/a b"
    if interface == "asgi":
        assert info["raw_path"] == "/mounted/caf%C3%A9/a%20b"


def test_the_bare_prefix_under_handle_path_is_the_app_root(server):
    _, caddy = server
    info = caddy.get_json("/mounted/")
    assert where(info) == ("/mounted", "/mounted/")


def test_script_name_cuts_its_prefix_under_a_matcher(server):
    interface, caddy = server
    info = caddy.get_json("/explicit/x")
    assert where(info) == ("/explicit", "/explicit/x")
    if interface == "wsgi":
        assert info["path_info"] == "/x"


def test_script_name_replaces_the_prefix_handle_path_stripped(server):
    interface, caddy = server
    info = caddy.get_json("/renamed/x")
    assert where(info) == ("/shop", "/shop/x")
    assert info["link"] == "/shop/next"


def test_an_app_that_routes_on_the_full_path_answers_under_a_matcher(start_caddy):
    """The Caddyfiles written for caddy-snake (and apps behind gunicorn or uvicorn
    behind a proxy) count on this."""
    caddy = start_caddy(python_block("/item/*", "paths_app:shop", strip_prefix=False, working_dir=PATHS))
    response = caddy.get("/item/abc")
    assert (response.status_code, response.text) == (200, "abc")


def test_flask_builds_links_and_redirects_under_the_handle_path_prefix(start_caddy, make_venv):
    venv = make_venv("flask", reqs.FLASK)
    caddy = start_caddy(python_block("/shop/*", "flask_links:app", working_dir=PATHS, venv=venv))
    page = caddy.get_json("/shop/page")
    assert page["self"] == "/shop/page"
    assert page["external"] == f"{caddy.base_url}/shop/page"
    go = caddy.get("/shop/go")
    assert go.status_code == 302
    assert go.headers["location"] == "/shop/page"
