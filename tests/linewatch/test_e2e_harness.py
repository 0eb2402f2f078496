"""The accounting behind ``linewatch bench e2e``: which samples end a window, and when each was meant to be sent."""

import numpy as np
import orjson
import pytest

from linewatch.e2e import Step, expected_windows, payloads


def test_expected_windows_follow_the_streams_rule_across_steps():
    # window 5, stride 2: stream samples 4, 6, 8, ... end a window, whichever step they fall in
    assert expected_windows(0, 10, 5, 2).tolist() == [4, 6, 8]
    assert expected_windows(10, 6, 5, 2).tolist() == [0, 2, 4]  # samples 10, 12, 14, relative to the step
    assert expected_windows(0, 4, 5, 2).tolist() == []


@pytest.mark.parametrize("fmt", ["json", "tag", "chunk"])
def test_intended_send_time_is_that_of_the_message_completing_the_sample(fmt):
    step = Step("x", fmt, rate=100.0, machines=2, seconds=1.2, chunk=4, features=3)
    messages = payloads(step, ["a", "b", "c"], 1.0, 1_000.0, np.zeros((16, 3), np.float32))
    assert len(messages) == int(step.rate * step.seconds)  # 120 messages at 100 msg/s over 1.2 s
    for index, (topic, payload) in enumerate(messages):
        machine = int(topic.split("/")[1][1:])
        body = orjson.loads(payload)
        sample = round(body["t0"] - 1_000.0 + step.chunk - 1 if fmt == "chunk" else body["ts"] - 1_000.0)
        if fmt == "tag" and topic.rsplit("/", 1)[1] != "c":
            continue  # only a sample's last tag completes it
        assert step.intended(0.0, np.int64(sample), np.int64(machine)) == pytest.approx(index / step.rate)
    assert step.samples_per_machine == {"json": 60, "tag": 20, "chunk": 240}[fmt]
