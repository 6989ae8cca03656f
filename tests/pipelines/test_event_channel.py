"""A run's events: appended to events.jsonl (the durable record the server applies and resumes
from), then announced on the worker's warm channel, so the server reads the file when there is news."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from kfbox.pipelines.events import EventReader, EventWriter
from kfbox.server.warm import Channel


def test_each_event_is_in_the_file_before_it_is_announced(tmp_path: Path) -> None:
    server_end, worker_end = (Channel(s) for s in socket.socketpair())
    path = tmp_path / "events.jsonl"
    writer = EventWriter(path, worker_end)
    reader = EventReader(path)
    for expected, fields in (("task_started", {"task_id": "t1"}), ("run_finished", {"state": "SUCCEEDED"})):
        writer.emit(expected, **fields)
        announced = server_end.recv()
        assert announced is not None and announced["event"]["event"] == expected
        applied = reader.read()  # what the server reads when woken
        assert [event["event"] for event in applied] == [expected]
    assert [json.loads(line)["event"] for line in path.read_text().splitlines()] == ["task_started", "run_finished"]
    worker_end.close()
    assert server_end.recv() is None  # the worker's end closed: the server learns it is gone


def test_without_a_channel_the_file_alone_is_written(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    EventWriter(path).emit("run_finished", state="FAILED", error="x")
    assert EventReader(path).read()[0]["state"] == "FAILED"
