"""The web UI's microphone latency, measured in a real browser.

Starts ``voxserve serve`` (Piper and tiny.en only) on a loopback port, opens ``/ui`` in headless Debian
Chromium whose fake microphone plays a ``../shared/speech_dev`` recording after 1 s of silence, starts
recording in the Transcribe tab and times, on the page's clock, the first transcript text against the
start of speech (the microphone opening plus the known offset of speech in the file: the silence
plus Silero VAD's first speech frame). A fresh browser per run; prints the median.

    .venv/bin/python benchmarks/ui_bench.py [--runs 3] [--file librispeech_1272-141231-0002.wav]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser.harness import browser, make_fake_mic, start_ui_server  # noqa: E402
from tests.e2e.conftest import stop_server  # noqa: E402
from tests.speech_dev import by_name  # noqa: E402


def one_run(url: str, mic_path: Path, speech_start_s: float, timeout_s: float) -> float | None:
    with browser(url, fake_mic=mic_path) as b:
        b.open_ui()
        b.page.get_by_role("tab", name="Transcribe").click()
        b.page.click("#stt-mic .record-button")
        deadline = time.monotonic() + timeout_s
        latency = b.mic_latency_s(speech_start_s)
        while latency is None and time.monotonic() < deadline:
            time.sleep(0.1)
            latency = b.mic_latency_s(speech_start_s)
        b.page.click("#stt-mic .stop-button")
        b.page.wait_for_selector("#stt-mic .record-button", timeout=30_000)
        if b.outside_requests:
            print(f"warning: the page loaded resources from elsewhere: {b.outside_requests}")
        return latency


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--file", default="librispeech_1272-141231-0002.wav")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ui-bench-") as tmp_name:
        tmp = Path(tmp_name)
        mic = make_fake_mic(by_name(args.file), tmp / "mic.wav")
        print(f"fake microphone: {args.file}, speech starts {mic.speech_start_s:.2f} s into the file")
        server = start_ui_server(tmp)
        try:
            # A warm-up run: the first decode of a fresh worker is slower than the rest.
            one_run(server.url, mic.path, mic.speech_start_s, mic.duration_s)
            latencies: list[float] = []
            for i in range(args.runs):
                latency = one_run(server.url, mic.path, mic.speech_start_s, mic.duration_s)
                shown = "no text" if latency is None else f"{latency:.2f} s"
                print(f"run {i + 1}: first partial {shown} after the start of speech")
                if latency is not None:
                    latencies.append(latency)
        finally:
            stop_server(server)
    if not latencies:
        print("first partial in the browser: none shown")
        sys.exit(1)
    median = statistics.median(latencies)
    print(
        f"first partial in the browser: {median:.2f} s after the start of speech "
        f"(median of {len(latencies)}; min {min(latencies):.2f}, max {max(latencies):.2f})"
    )


if __name__ == "__main__":
    main()
