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
