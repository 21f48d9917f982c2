import numpy as np
import pytest

from sonalyze_devices.synth import PhoneFlaws, synthesize_recording


def impulse(n: int, at: int = 0) -> np.ndarray:
    x = np.zeros(n)
    x[at] = 1.0
    return x


class TestSynthesizeRecording:
    def test_start_delay_shifts_the_signal(self) -> None:
        rng = np.random.default_rng(0)
        played = impulse(4800, at=100)
        rec = synthesize_recording(played, 48000, impulse(10), 48000, PhoneFlaws(0.1, 120.0, 0.0, 48000), rng)
        assert int(np.argmax(np.abs(rec))) == 100 + 4800

    def test_clock_drift_stretches_by_ppm(self) -> None:
        rng = np.random.default_rng(0)
        played = np.zeros(480000)
        played[1000] = played[-1000] = 1.0
        rec = synthesize_recording(played, 48000, impulse(1), 48000, PhoneFlaws(0.0, 120.0, 200.0, 48000), rng)
        half = rec.size // 2
        first, second = int(np.argmax(np.abs(rec[:half]))), half + int(np.argmax(np.abs(rec[half:])))
        spacing_ratio = (second - first) / (479000 - 1000)
        assert spacing_ratio == pytest.approx(1 + 200e-6, abs=5e-6)

    def test_other_recording_rate_resamples(self) -> None:
        rng = np.random.default_rng(0)
        played = np.sin(2 * np.pi * 1000 * np.arange(48000) / 48000)
        rec = synthesize_recording(played, 48000, impulse(1), 48000, PhoneFlaws(0.0, 80.0, 0.0, 44100), rng)
        assert rec.size == pytest.approx(44100, abs=2)
        spectrum = np.abs(np.fft.rfft(rec[1000:-1000]))
        freq_hz = np.fft.rfftfreq(rec.size - 2000, 1 / 44100)[np.argmax(spectrum)]
        assert freq_hz == pytest.approx(1000, abs=2)

    def test_noise_level_follows_peak_to_noise(self) -> None:
        rng = np.random.default_rng(1)
        played = np.concatenate([impulse(100, 50), np.zeros(48000)])
        rec = synthesize_recording(played, 48000, impulse(1), 48000, PhoneFlaws(0.0, 40.0, 0.0, 48000), rng)
        noise_db = 20 * np.log10(np.std(rec[10000:]) / np.max(np.abs(rec)))
        assert noise_db == pytest.approx(-40, abs=1.0)

    def test_rejects_multichannel(self) -> None:
        with pytest.raises(ValueError, match="1-D"):
            synthesize_recording(np.zeros((2, 10)), 48000, impulse(1), 48000, PhoneFlaws(), np.random.default_rng(0))
