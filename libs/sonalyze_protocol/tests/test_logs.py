"""The services' log handler: one line per record, written in one write per turn of the event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

from sonalyze_protocol.logs import ContextFilter, ContextFormatter, TurnBufferedHandler, bind_context


class Writes:
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> None:
        self.writes.append(text)

    def flush(self) -> None:
        pass

    @property
    def lines(self) -> list[str]:
        return "".join(self.writes).splitlines()


def make_logger(stream: Writes) -> tuple[logging.Logger, TurnBufferedHandler]:
    handler = TurnBufferedHandler(stream)
    handler.setFormatter(ContextFormatter())
    handler.addFilter(ContextFilter("svc"))
    logger = logging.getLogger(f"test.turns.{id(stream)}")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    return logger, handler


async def test_the_lines_of_one_turn_go_out_in_one_write_at_its_end() -> None:
    stream = Writes()
    logger, _ = make_logger(stream)
    for i in range(3):
        with bind_context(request_id=f"r{i}", device_id="d"):
            logger.info("event=%d", i)
    assert stream.writes == []
    await asyncio.sleep(0)
    assert len(stream.writes) == 1
    assert [line.split(" svc ", 1)[1] for line in stream.lines] == [
        f"test.turns.{id(stream)} request_id=r{i} device_id=d event={i}" for i in range(3)
    ]
    logger.info("next turn")
    await asyncio.sleep(0)
    assert len(stream.writes) == 2


async def test_a_line_from_another_thread_is_written_at_once_after_the_waiting_ones() -> None:
    stream = Writes()
    logger, _ = make_logger(stream)
    logger.info("first, in the loop")
    thread = threading.Thread(target=logger.info, args=("second, from a thread",))
    thread.start()
    thread.join()
    assert [line.split("device_id=- ")[1] for line in stream.lines] == ["first, in the loop", "second, from a thread"]


def test_without_a_loop_each_line_is_written_at_once_and_flush_writes_what_waits() -> None:
    stream = Writes()
    logger, handler = make_logger(stream)
    logger.info("no loop")
    assert len(stream.writes) == 1

    async def log_and_leave() -> None:
        logger.info("logged as the loop ends")

    asyncio.run(log_and_leave())  # the loop closes before its next turn could write the line
    handler.flush()  # as logging.shutdown does at exit
    assert [line.split("device_id=- ")[1] for line in stream.lines] == ["no loop", "logged as the loop ends"]

    async def log_and_turn(text: str) -> int:
        logger.info(text)
        await asyncio.sleep(0)
        return len(stream.lines)

    asyncio.run(log_and_leave())
    assert asyncio.run(log_and_turn("in the next loop")) == 4  # a loop that closed with lines waiting holds none


def test_the_timestamp_is_the_standard_one() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.created, record.msecs = 1_700_000_000.25, 250.0
    expected = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created)) + ",250"
    formatter = ContextFormatter()
    assert formatter.formatTime(record) == expected == logging.Formatter().formatTime(record)
    record.created, record.msecs = 1_700_000_001.5, 500.0
    assert formatter.formatTime(record) == logging.Formatter().formatTime(record)


async def test_a_forked_child_does_not_write_the_parents_waiting_lines() -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    logger, handler = make_logger(stream)  # type: ignore[arg-type]
    logger.info("waiting in the parent")
    pid = os.fork()
    if pid == 0:  # the child
        handler.flush()
        stream.flush()
        os._exit(0)
    os.waitpid(pid, 0)
    await asyncio.sleep(0)
    stream.close()
    with os.fdopen(read_end) as written:
        assert [line.split("device_id=- ")[1] for line in written.read().splitlines()] == ["waiting in the parent"]
