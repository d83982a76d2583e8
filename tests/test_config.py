"""The config layer: types checked, ranges checked, credentials never saved."""

import pytest

from deita.config import redact_url


@pytest.mark.parametrize("url, redacted", [
    ("http://user:key@host:8000/v1", "http://***@host:8000/v1"),
    ("http://u:p/ss@host/v1", "http://***@host/v1"),  # an unencoded "/" in the password
    ("user:key@host/v1", "***@host/v1"),  # no scheme
    ("http://host/v1?q=a@b", "http://host/v1?q=a@b"),  # an "@" in the query is not a credential
    ("http://[::1]:8000/v1", "http://[::1]:8000/v1"),
])
def test_redact_url_removes_credentials_only(url, redacted):
    assert redact_url(url) == redacted


def test_yaml_values_are_type_checked_and_ranges_checked_before_work():
    from deita.config import check_config, config_from_mapping
    from deita.errors import DeitaError
    from deita.scoring.config import ScoreConfig
    from deita.selection.config import FilterConfig

    with pytest.raises(DeitaError, match="threshold: expected a number, got 'high'"):
        config_from_mapping(FilterConfig, {"threshold": "high"}, "run.yaml [filter]")
    with pytest.raises(DeitaError, match="did you mean 'size'"):
        config_from_mapping(FilterConfig, {"sise": 3}, "run.yaml [filter]")
    config = config_from_mapping(FilterConfig, {"threshold": 1, "sort_key": ["a", "b"]})
    assert config.threshold == 1.0 and isinstance(config.threshold, float) and config.sort_key == ("a", "b")
    with pytest.raises(DeitaError, match=r"size: 0 is out of range \(must be at least 1 or -1\)"):
        check_config(config_from_mapping(FilterConfig, {"size": 0}))
    check_config(config_from_mapping(FilterConfig, {"size": -1}))
    nested = config_from_mapping(ScoreConfig, {"backend": "openai", "openai": {"served_model": "m"}})
    assert nested.openai.served_model == "m" and nested.openai.concurrency == 16
    with pytest.raises(DeitaError, match="batch_tokens .* must be at least max_length"):
        check_config(config_from_mapping(ScoreConfig, {"batch_tokens": 100, "max_length": 200}))
