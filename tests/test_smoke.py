from conftest import call


def test_string_header_from_loopback_becomes_remote_user():
    answer = call(headers={"X-User": "alice"}, user_name_header="X-User")
    assert answer.status == 200
    assert answer.user == "alice"
    assert answer.principal.roles == ()
