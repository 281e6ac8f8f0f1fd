"""``.enhance/dev.env``: written by ``enhance dev``, read only when nothing is configured."""

from __future__ import annotations

import os

import pytest

from workers import devenv


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A directory where `enhance dev` ran (this process stands for it), cwd one level down."""
    devenv.write_dev_env(tmp_path, {"REDIS_URL": "redis://127.0.0.1:7777/0",
                                    "S3_ENDPOINT_URL": "http://127.0.0.1:7778"})
    (tmp_path / "photos").mkdir()
    monkeypatch.chdir(tmp_path / "photos")
    return tmp_path


def test_it_is_found_from_below_and_loaded_when_nothing_is_exported(checkout):
    environ = {"PATH": "/bin"}

    path, values = devenv.load_dev_env(environ)

    assert path == checkout / ".enhance" / "dev.env"
    assert environ["REDIS_URL"] == "redis://127.0.0.1:7777/0"
    assert environ[devenv.PID_VARIABLE] == str(os.getpid())
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert devenv.describe(path, values) == ("enhance: using the settings of `enhance dev` from "
                                             "../.enhance/dev.env")


@pytest.mark.parametrize("name", devenv.PLACE_VARIABLES)
def test_any_exported_place_setting_wins_whole(checkout, name):
    environ = {name: "set-by-you"}

    assert devenv.load_dev_env(environ) is None
    assert environ == {name: "set-by-you"}


def test_a_file_left_by_a_dead_stack_says_so(checkout):
    path = checkout / ".enhance" / "dev.env"
    values = devenv.read_env_file(path)
    values[devenv.PID_VARIABLE] = "999999999"

    assert devenv.describe(path, values).endswith(
        "but the `enhance dev` that wrote it (pid 999999999) is not running: start it again")


def test_nothing_is_loaded_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert devenv.load_dev_env({}) is None


def test_a_second_enhance_dev_in_the_same_directory_is_refused(checkout):
    from workers.cli_errors import CliFailure
    from workers.dev import _refuse_a_second_stack

    with pytest.raises(CliFailure, match=rf"enhance dev already runs here \(pid {os.getpid()}, "
                                         r"\.enhance/dev\.env\): use that one, or stop it first"):
        _refuse_a_second_stack(checkout)


def test_a_dev_env_left_readable_by_others_is_made_private_again(tmp_path):
    (tmp_path / ".enhance").mkdir()
    (tmp_path / ".enhance" / "dev.env").write_text("REDIS_URL=redis://:old@127.0.0.1/0\n")
    (tmp_path / ".enhance" / "dev.env").chmod(0o644)

    path = devenv.write_dev_env(tmp_path, {"REDIS_URL": "redis://:pw@127.0.0.1:7777/0"})

    assert oct(path.stat().st_mode & 0o777) == "0o600"  # REDIS_URL may carry a password
