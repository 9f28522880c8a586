"""Reconcile endpoints: HTTPS to public hosts only, and file: endpoints only inside one base directory."""

from __future__ import annotations

import json

import pytest

from connector_sla.jobs.endpoints import EndpointRefused, check_endpoint, read_file_page, resolve_file


@pytest.fixture
def base(tmp_path):
    allowed = tmp_path / "data"
    allowed.mkdir()
    (allowed / "incidents.json").write_text(json.dumps({"incidents": [{"id": "P1"}]}))
    (allowed / "nested").mkdir()
    (allowed / "nested" / "page.json").write_text("{}")
    (tmp_path / "secret.json").write_text(json.dumps({"password": "hunter2"}))
    return allowed


def test_a_file_inside_the_base_directory_is_read(base):
    # Given a relative and an absolute file: endpoint naming files inside the allowed directory
    assert read_file_page("file:incidents.json", str(base)) == {"incidents": [{"id": "P1"}]}
    assert read_file_page(f"file://{base}/nested/page.json", str(base)) == {}
    assert check_endpoint("file:nested/page.json", base_dir=str(base), allowed_local=()).kind == "file"


@pytest.mark.parametrize(
    "endpoint",
    [
        "file:../secret.json",
        "file:nested/../../secret.json",
        "file:./../secret.json",
        "file:///{base}/../secret.json",
    ],
)
def test_dot_dot_traversal_is_refused(base, endpoint):
    with pytest.raises(EndpointRefused, match=r"'\.\.' is not allowed"):
        check_endpoint(endpoint.format(base=base), base_dir=str(base), allowed_local=())


@pytest.mark.parametrize("endpoint", ["file:///proc/self/environ", "file:///etc/passwd", "file://localhost/etc/hosts"])
def test_absolute_paths_outside_the_base_directory_are_refused(base, endpoint):
    with pytest.raises(EndpointRefused, match="absolute path outside the allowed directory"):
        check_endpoint(endpoint, base_dir=str(base), allowed_local=())


def test_proc_self_environ_cannot_be_read_by_any_spelling(base):
    # Given spellings that try to reach the process environment (which holds credentials in Lambda)
    (base / "env-link").symlink_to("/proc/self/environ")
    for endpoint in ("file:///proc/self/environ", "file:../../../proc/self/environ", "file:env-link"):
        # Then none is read
        with pytest.raises(EndpointRefused):
            read_file_page(endpoint, str(base))


def test_a_symlink_that_leads_out_of_the_base_directory_is_refused(base):
    (base / "escape.json").symlink_to(base.parent / "secret.json")
    (base / "escape-dir").symlink_to(base.parent)

    for endpoint in ("file:escape.json", "file:escape-dir/secret.json"):
        with pytest.raises(EndpointRefused, match="leads outside the allowed directory"):
            check_endpoint(endpoint, base_dir=str(base), allowed_local=())


def test_a_symlink_that_stays_inside_the_base_directory_is_fine(base):
    (base / "latest.json").symlink_to(base / "incidents.json")

    assert resolve_file("file:latest.json", str(base)) == (base / "incidents.json").resolve()


def test_a_symlink_planted_after_registration_is_still_refused_when_the_file_is_read(base):
    # Given an endpoint checked while it was a plain file
    check_endpoint("file:swap.json", base_dir=str(base), allowed_local=())
    # When the name is replaced by a symlink to a file outside the directory before the run reads it
    (base / "swap.json").symlink_to(base.parent / "secret.json")

    # Then the read is refused: the path is checked again at read time
    with pytest.raises(EndpointRefused, match="leads outside"):
        read_file_page("file:swap.json", str(base))


def test_file_endpoints_are_disabled_without_a_base_directory():
    with pytest.raises(EndpointRefused, match="disabled in this deployment"):
        check_endpoint("file:incidents.json", base_dir="", allowed_local=())


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("file://fileserver/share/x.json", "cannot name a remote host"),
        ("file:", "names no file"),
        ("file:missing.json", "does not exist"),
        ("file:nested", "is not a regular file"),
    ],
)
def test_other_file_endpoint_problems_say_what_is_wrong(base, endpoint, message):
    with pytest.raises(EndpointRefused, match=message):
        read_file_page(endpoint, str(base))


def test_a_file_that_is_not_json_is_refused(base):
    (base / "broken.json").write_text("not json")
    with pytest.raises(EndpointRefused, match="not a JSON document"):
        read_file_page("file:broken.json", str(base))


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("http://oncall.example.com/incidents", "only https://"),
        ("https://169.254.169.254/latest/meta-data/", "not a public address"),
        ("https://10.0.0.8/incidents", "not a public address"),
        ("https://[::1]/incidents", "not a public address"),
        ("https://[::ffff:127.0.0.1]/incidents", "not a public address"),
        ("https://127.0.0.1:8443/incidents", "not a public address"),
        ("https://localhost/incidents", "local name"),
        ("https://metadata.google.internal/computeMetadata/v1/", "local name"),
        ("https://user:pw@oncall.example.com/incidents", "credentials"),
        ("https:///incidents", "has no host"),
        ("gopher://oncall.example.com/", "scheme 'gopher' is not supported"),
        ("ftp://oncall.example.com/x.json", "scheme 'ftp' is not supported"),
        ("/etc/passwd", "scheme '(none)' is not supported"),
        ("https://oncall.example.com/in\ncidents", "control characters"),
        ("https://oncall.example.com:99999/", "invalid port"),
    ],
)
def test_http_endpoints_must_be_https_to_a_public_host(endpoint, message):
    with pytest.raises(EndpointRefused, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_endpoint(endpoint, base_dir="", allowed_local=())


def test_the_local_stack_may_allow_its_fake_provider_over_plain_http():
    allowed = ("127.0.0.1:3020",)
    endpoint = check_endpoint("http://127.0.0.1:3020/incidents", base_dir="", allowed_local=allowed)
    assert endpoint.kind == "http"
    # Only that exact host:port: another port on loopback is still refused
    with pytest.raises(EndpointRefused):
        check_endpoint("http://127.0.0.1:3021/incidents", base_dir="", allowed_local=allowed)


def test_public_https_endpoints_with_a_query_are_accepted():
    endpoint = check_endpoint(
        "https://api.pagerduty.com/incidents?statuses[]=acknowledged", base_dir="", allowed_local=()
    )
    assert endpoint.url.endswith("statuses[]=acknowledged")
