from sonalyze_devices.display import PairRow, render_table


class TestRenderTable:
    def test_one_row_per_pair_with_difference(self) -> None:
        rows = [
            PairRow("speaker_1", "mic_1", {"rt60_s": 0.52, "sti": 0.71}, {"rt60_s": 0.50, "sti": 0.70}),
            PairRow("speaker_2", "mic_2", {"rt60_s": None}, {"rt60_s": 0.61}),
        ]
        text = render_table(rows)
        lines = text.splitlines()
        assert lines[0].split()[:2] == ["speaker", "mic"]
        assert "0.52 / 0.50 / +0.02" in text
        assert "- / 0.61 / -" in text
        assert any(line.startswith("speaker_2  mic_2") for line in lines)
