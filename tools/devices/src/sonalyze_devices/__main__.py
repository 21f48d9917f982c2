"""``python -m sonalyze_devices`` (``make demo``): a full measurement with virtual phones.

Connects an admin, speakers and microphones to the gateway, runs one session through the 11-step
protocol and prints measured against simulated room parameters per (speaker, microphone) pair.
When no gateway answers at ``--gateway``, the local suite is started for the length of the demo.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from urllib.parse import urlparse

import httpx

from sonalyze_devices.app_scenario import run_app_demo
from sonalyze_devices.display import Progress, render_table
from sonalyze_devices.room import RoomLayout, layout_from_profile
from sonalyze_devices.scenario import DemoOptions, run_demo
from sonalyze_suite.launcher import ServiceFailed, Suite, SuiteConfig


def _gateway_http_url(url: str) -> str:
    parsed = urlparse(url)
    scheme = {"ws": "http", "wss": "https"}.get(parsed.scheme, parsed.scheme or "http")
    return f"{scheme}://{parsed.netloc}"


def _gateway_answers(http_url: str) -> bool:
    try:
        return httpx.get(f"{http_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sonalyze-devices", description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", default="ws://127.0.0.1:8000/ws", help="gateway WebSocket URL")
    parser.add_argument("--speakers", type=int, default=2)
    parser.add_argument("--microphones", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1, help="seed of the phones' delays, noise and clock drift")
    parser.add_argument(
        "--drop-mic", action="store_true", help="the last microphone goes silent once; the admin retries"
    )
    parser.add_argument("--slow-upload", type=float, nargs="?", const=5.0, default=0.0, metavar="SECONDS",
                        help="the first microphone waits before uploading (default 5 s)")  # fmt: skip
    parser.add_argument(
        "--disconnect-reconnect", action="store_true", help="a microphone drops its connection and returns"
    )
    parser.add_argument("--room", default=None, metavar="PROFILE",
                        help="measure a reference profile's room (classroom, office, living_room, ...) instead of the default")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    parser.add_argument("--dialect", choices=("sonalyze", "app"), default="sonalyze",
                        help="speak our own protocol, or exactly like the Sonalyze phone app (its names, fields, "
                             "upload names, analysis.run per recording, hard casts checked on every answer and push)")  # fmt: skip
    return parser.parse_args(argv)


async def _profile_layout(http_url: str, profile_id: str, n_speakers: int, n_microphones: int) -> RoomLayout:
    async with httpx.AsyncClient(base_url=http_url, timeout=30) as http:
        response = await http.get(f"/v1/simulation/reference-profiles/{profile_id}")
    if response.status_code != 200:
        message = response.json().get("error", {}).get("message", response.text[:200])
        raise SystemExit(f"--room {profile_id}: {message}")
    return layout_from_profile(response.json(), n_speakers, n_microphones)


async def _run(args: argparse.Namespace, http_url: str) -> int:
    progress = Progress()
    layout = None
    if args.room:
        layout = await _profile_layout(http_url, args.room, args.speakers, args.microphones)
        progress.report("demo", f"room: reference profile {args.room}")
    options = DemoOptions(
        gateway_url=http_url,
        n_speakers=args.speakers,
        n_microphones=args.microphones,
        seed=args.seed,
        drop_mic=args.drop_mic,
        slow_upload_s=args.slow_upload,
        disconnect_reconnect=args.disconnect_reconnect,
        session_timeout_s=args.timeout,
        layout=layout,
    )
    if args.dialect == "app":
        result = await run_app_demo(options, progress)
    else:
        result = await run_demo(options, progress)
    print()
    if result.rows:
        print("Measured / simulated / difference, broadband, per (speaker slot, microphone slot):\n")
        print(render_table(result.rows))
        print()
    for error in result.errors:
        print(
            f"reported: {error.get('code') or error.get('error_code')}: {error.get('message') or error.get('error_message', '')}",
            file=sys.stderr,
        )
    for slot, problems in result.violations.items():
        for problem in problems:
            print(f"HARD CAST FAILED on {slot}: {problem}", file=sys.stderr)
    if args.dialect == "app" and result.results_by_phone:
        held = ", ".join(f"{slot} {n}" for slot, n in result.results_by_phone.items())
        print(f"results held per phone: {held}")
        if result.create_session_s is not None:
            print(f"create_session answered in {result.create_session_s * 1000:.0f} ms (the app's timer: 500 ms)")
    if result.ok:
        print(f"session {result.session_id} complete, every pair analysed (job {result.job_id})")
        return 0
    print("the session did not complete with every pair analysed", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    http_url = _gateway_http_url(args.gateway)
    suite: Suite | None = None
    if not _gateway_answers(http_url):
        host, port = urlparse(http_url).hostname, urlparse(http_url).port or 80
        if host not in ("127.0.0.1", "localhost"):
            print(f"no gateway answers at {http_url}", file=sys.stderr)
            return 2
        print(f"no gateway at {http_url}: starting the local suite for this demo ...", flush=True)
        config = SuiteConfig.from_environment()
        config.ports["gateway"] = port
        config.log_level = "WARNING"
        suite = Suite(config, log_dir=config.state_dir / "demo-logs")
        try:
            suite.start(timeout_s=120)
        except ServiceFailed as exc:
            print(f"could not start the suite: {exc}", file=sys.stderr)
            return 2
    try:
        return asyncio.run(_run(args, http_url))
    except KeyboardInterrupt:
        return 130
    finally:
        if suite is not None:
            suite.stop()


if __name__ == "__main__":
    sys.exit(main())
