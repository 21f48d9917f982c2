import pytest

from sonalyze_protocol.auth import tokens_match


class TestTokensMatch:
    def test_equal_tokens_match(self) -> None:
        assert tokens_match("secret", "secret")

    def test_different_tokens_do_not_match(self) -> None:
        assert not tokens_match("secret", "secreT")

    def test_missing_header_does_not_match(self) -> None:
        assert not tokens_match("secret", None)

    def test_empty_expected_token_never_matches(self) -> None:
        assert not tokens_match("", "")

    def test_empty_given_token_never_matches(self) -> None:
        assert not tokens_match("secret", "")


class TestSettingsToken:
    def test_no_default_token(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from sonalyze_protocol.settings import ServiceSettings

        monkeypatch.delenv("INTERNAL_AUTH_TOKEN", raising=False)

        assert ServiceSettings().internal_auth_token == ""
        assert not ServiceSettings().has_internal_token

    def test_published_example_tokens_are_refused(self) -> None:
        import pytest
        from pydantic import ValidationError

        from sonalyze_protocol.settings import ServiceSettings

        for value in ("sonalyze_internal_token", "change-me-to-a-long-random-token"):
            with pytest.raises(ValidationError, match="published example value"):
                ServiceSettings(internal_auth_token=value)
