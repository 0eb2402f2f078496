"""Sparkplug B on the wire and the consumer's state machine, without a broker (fake link and clock)."""


import pytest

from edge_runtime.ingest.badinput import BadInput
from edge_runtime.ingest.decoders import BadSample, FeatureLayout
from edge_runtime.ingest.topics import SparkplugTemplate, parse_sparkplug
from edge_runtime.sparkplug import sparkplug_b_pb2 as pb
from edge_runtime.sparkplug.codec import EdgeNodeWriter, decode, metric_value, rebirth_request, set_value
from edge_runtime.sparkplug.input import SparkplugInput

NOW = 1.8e9
WINDOW = (1e9, 60.0)


@pytest.mark.parametrize(("datatype", "value"), [(pb.Int8, -128), (pb.Int8, 127), (pb.Int16, -2), (pb.Int32, -(2**31)), (pb.Int64, -5),
                                                 (pb.UInt8, 255), (pb.UInt32, 2**32 - 1), (pb.UInt64, 2**63), (pb.Float, 0.5),
                                                 (pb.Double, -1e300), (pb.Boolean, True)])
def test_numeric_metrics_round_trip_with_signed_integers_as_twos_complement(datatype, value):
    metric = pb.Payload.Metric(datatype=datatype)
    set_value(metric, datatype, value)
    again = pb.Payload.Metric()
    again.ParseFromString(metric.SerializeToString())
    assert metric_value(again, datatype) == float(value)


def test_a_feature_cannot_be_a_string_or_a_value_in_the_wrong_field():
    with pytest.raises(TypeError, match="String"):
        metric_value(pb.Payload.Metric(datatype=pb.String, string_value="x"), pb.String)
    with pytest.raises(TypeError, match="carries float_value"):
        metric_value(pb.Payload.Metric(float_value=1.0), pb.Double)
    assert metric_value(pb.Payload.Metric(is_null=True), pb.Double) is None


def test_topics_parse_and_the_template_takes_one_group():
    assert parse_sparkplug("spBv1.0/g1/DDATA/n1/d1").key == "n1/d1"
    assert parse_sparkplug("spBv1.0/g1/NBIRTH/n1").key == "n1"
    assert parse_sparkplug("spBv1.0/STATE/host") is None and parse_sparkplug("spBv1.0/g1/DDATA/n1") is None
    template = SparkplugTemplate("spBv1.0/g1")
    assert template.subscription == "spBv1.0/g1/#"
    assert template.match("spBv1.0/g1/DDATA/n1/d1") == ("n1/d1", "DDATA") and template.match("spBv1.0/g2/DDATA/n1/d1") is None
    for bad in ("spBv1.0", "spBv1.0/+", "plant/g1", "spBv1.0/g1/x"):
        with pytest.raises(ValueError, match="sparkplug"):
            SparkplugTemplate(bad)


def test_malformed_protobuf_is_refused_as_such():
    with pytest.raises(BadSample) as refused:
        decode(b"\xff\xff\xff not protobuf")
    assert refused.value.reason == "malformed_protobuf"


class Link:
    """What the consumer sends and restarts, and a clock it reads."""

    def __init__(self):
        self.sent, self.restarted, self.now = [], [], 0.0

    def consumer(self, names=("a", "b")) -> SparkplugInput:
        """A consumer of features ``names`` wired to this link."""
        return SparkplugInput(FeatureLayout(list(names)), lambda t, p: self.sent.append((t, p)), self.restarted.append, 10.0,
                              lambda: self.now)


def node(device_metrics=(("a", pb.Double), ("b", pb.Double), ("label", pb.String))) -> EdgeNodeWriter:
    writer = EdgeNodeWriter("g", "n1", bd_seq=3)
    writer.define("d1", list(device_metrics))
    return writer


def feed(consumer, bad, message):
    topic, payload = message
    return consumer.take(parse_sparkplug(topic), payload, NOW, WINDOW, bad)


def test_data_before_birth_is_refused_and_asks_for_a_rebirth_at_most_once_per_interval():
    link, bad, writer = Link(), BadInput(), node()
    consumer = link.consumer()
    for _ in range(3):
        with pytest.raises(BadSample) as refused:
            feed(consumer, bad, writer.data("d1", [1.0, 2.0, "x"], 1_700_000_000_000))
        assert refused.value.reason == "sparkplug_unborn"
    assert [t for t, _ in link.sent] == ["spBv1.0/g/NCMD/n1"]  # rate-limited
    assert [m.name for m in decode(link.sent[0][1]).metrics] == ["Node Control/Rebirth"]
    link.now = 10.5
    with pytest.raises(BadSample):
        feed(consumer, bad, writer.data("d1", [1.0, 2.0, "x"], 1_700_000_000_000))
    assert len(link.sent) == 2


def test_births_build_the_aliases_that_data_uses():
    link, bad, writer = Link(), BadInput(), node()
    consumer = link.consumer(("b", "a"))
    births = writer.birth({"d1": [1.0, 2.0, "x"]}, 1_700_000_000_000)
    assert feed(consumer, bad, births[0]) == []  # the node has no metric named like a feature
    assert feed(consumer, bad, births[1]) == [(1.7e9, {0: 2.0, 1: 1.0})]
    topic, payload = writer.data("d1", [5.0, ..., "y"], 1_700_000_001_000)
    assert all(not m.name for m in decode(payload).metrics)  # alias only
    assert feed(consumer, bad, (topic, payload)) == [(1.7e9 + 1, {1: 5.0})]  # "label" matches no feature: ignored
    assert link.sent == [] and not bad.counts


def test_a_sequence_gap_restarts_the_nodes_streams_and_asks_for_a_rebirth():
    link, bad, writer = Link(), BadInput(), node()
    consumer = link.consumer()
    for message in writer.birth({"d1": [1.0, 2.0, "x"]}, 1_700_000_000_000):
        feed(consumer, bad, message)
    feed(consumer, bad, writer.data("d1", [1.0, 2.0, "x"], 1_700_000_001_000))
    writer.seq += 1  # one DDATA lost
    with pytest.raises(BadSample) as refused:
        feed(consumer, bad, writer.data("d1", [1.0, 2.0, "x"], 1_700_000_003_000))
    assert refused.value.reason == "sparkplug_sequence"
    assert set(link.restarted) == {"n1", "n1/d1"} and len(link.sent) == 1
    with pytest.raises(BadSample, match="sparkplug_unborn"):  # nothing counts until the node births again
        feed(consumer, bad, writer.data("d1", [1.0, 2.0, "x"], 1_700_000_004_000))
    for message in writer.birth({"d1": [1.0, 2.0, "x"]}, 1_700_000_005_000):
        feed(consumer, bad, message)
    assert feed(consumer, bad, writer.data("d1", [3.0, 4.0, "x"], 1_700_000_006_000)) == [(1.7e9 + 6, {0: 3.0, 1: 4.0})]


def test_a_stale_death_is_ignored_and_a_current_one_ends_the_streams():
    link, bad, writer = Link(), BadInput(), node()
    consumer = link.consumer()
    for message in writer.birth({"d1": [1.0, 2.0, "x"]}, 1_700_000_000_000):
        feed(consumer, bad, message)
    old = EdgeNodeWriter("g", "n1", bd_seq=2)  # the will of the session before
    assert feed(consumer, bad, old.death()) == [] and link.restarted == []
    assert feed(consumer, bad, writer.data("d1", [1.0, 2.0, "x"], 1_700_000_001_000)) == [(1.7e9 + 1, {0: 1.0, 1: 2.0})]
    feed(consumer, bad, writer.death())
    assert set(link.restarted) == {"n1", "n1/d1"}
    with pytest.raises(BadSample, match="sparkplug_unborn"):
        feed(consumer, bad, writer.data("d1", [1.0, 2.0, "x"], 1_700_000_002_000))


def test_a_feature_of_an_unexpected_datatype_is_counted_and_left_out():
    link, bad = Link(), BadInput()
    writer = node((("a", pb.Double), ("b", pb.String)))
    consumer = link.consumer()
    for message in writer.birth({"d1": [1.0, "text"]}, 1_700_000_000_000):
        samples = feed(consumer, bad, message)
    assert samples == [(1.7e9, {0: 1.0})] and bad.counts["wrong_type"] == 1


def test_rebirth_request_names_the_node():
    topic, payload = rebirth_request("g", "n7")
    assert topic == "spBv1.0/g/NCMD/n7" and decode(payload).metrics[0].boolean_value is True


def test_metrics_stamped_at_different_times_are_separate_samples_in_time_order():
    link, bad, writer = Link(), BadInput(), node((("a", pb.Double), ("b", pb.Double)))
    consumer = link.consumer()
    for message in writer.birth({"d1": [None, None]}, 1_700_000_000_000):
        assert feed(consumer, bad, message) == []  # null values: nothing to sample
    topic, payload = writer.data("d1", [1.0, 2.0], 1_700_000_002_000)
    message = pb.Payload()
    message.ParseFromString(payload)
    message.metrics[1].timestamp = 1_700_000_001_000  # b was read a second earlier (report by exception)
    assert feed(consumer, bad, (topic, message.SerializeToString())) == [(1.7e9 + 1, {1: 2.0}), (1.7e9 + 2, {0: 1.0})]


def test_a_categorical_condition_travels_as_a_string_metric():
    link, bad = Link(), BadInput()
    consumer = SparkplugInput(FeatureLayout(["a"], [{"name": "recipe", "kind": "categorical", "categories": ["A", "B"]}]),
                              None, link.restarted.append)
    writer = node((("a", pb.Double), ("recipe", pb.String)))
    births = writer.birth({"d1": [1.0, "B"]}, 1_700_000_000_000)
    feed(consumer, bad, births[0])
    assert feed(consumer, bad, births[1]) == [(1.7e9, {0: 1.0, 1: 1.0})]  # B is category 1
    assert feed(consumer, bad, writer.data("d1", [2.0, "Z"], 1_700_000_001_000)) == [(1.7e9 + 1, {0: 2.0, 1: -1.0})]  # unknown: -1


@pytest.mark.parametrize(("section", "message"), [({"group": "a/b"}, "sparkplug.group"), ({"edge_node": "{line}"}, "sparkplug.edge_node"),
                                                  ({"edge_node": ""}, "sparkplug.edge_node")])
def test_sparkplug_ids_are_checked_at_load(section, message):
    from edge_runtime.config import parse_config
    from edge_runtime.contract.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        parse_config({"sparkplug": section, "models": [{"name": "m", "bundle": "b", "inputs": [{"topic": "spBv1.0/g", "format": "sparkplug"}]}]})


def test_a_sparkplug_input_needs_the_namespace_and_one_group():
    from edge_runtime.config import parse_config
    from edge_runtime.contract.errors import ConfigError

    with pytest.raises(ConfigError, match="spBv1.0/<group id>"):
        parse_config({"models": [{"name": "m", "bundle": "b", "inputs": [{"topic": "spBv1.0/{group}", "format": "sparkplug"}]}]})


def test_edge_nodes_beyond_the_limit_are_refused_not_remembered():
    link, bad = Link(), BadInput()
    consumer = SparkplugInput(FeatureLayout(["a"]), None, link.restarted.append, max_nodes=2)
    for name in ("n1", "n2"):
        writer = EdgeNodeWriter("g", name)
        feed(consumer, bad, writer.birth({})[0])
    with pytest.raises(BadSample, match="stream_limit"):
        feed(consumer, bad, EdgeNodeWriter("g", "n3").birth({})[0])
    assert len(consumer.nodes) == 2


def test_a_device_death_ends_that_device_only():
    link, bad, writer = Link(), BadInput(), node((("a", pb.Double), ("b", pb.Double)))
    writer.define("d2", [("a", pb.Double), ("b", pb.Double)])
    consumer = link.consumer()
    for message in writer.birth({"d1": [1.0, 2.0], "d2": [3.0, 4.0]}, 1_700_000_000_000):
        feed(consumer, bad, message)
    assert feed(consumer, bad, writer.device_death("d1")) == [] and link.restarted == ["n1/d1"]
    with pytest.raises(BadSample, match="sparkplug_unborn"):
        feed(consumer, bad, writer.data("d1", [1.0, 2.0], 1_700_000_001_000))
    assert feed(consumer, bad, writer.data("d2", [5.0, 6.0], 1_700_000_001_000)) == [(1.7e9 + 1, {0: 5.0, 1: 6.0})]


# Payloads encoded by another implementation, pysparkplug 0.6.1 (NBirth/DBirth with datatypes, DData by alias only):
# an NBIRTH with bdSeq 3; a DBIRTH of temp Int8 -5, count UInt32 4e9, flow Float 1.5, pressure Double -2.25, running
# Boolean true, label String "x" (aliases 1-6); a DDATA of temp -128, count 7, flow 0.25, pressure 9.5, running false.
PYSPARKPLUG = [
    "0880d095ffbc3112120a0562645365711880d095ffbc31200458031800",
    "0880d095ffbc3112140a0474656d7010011880d095ffbc31200150fb0112180a05636f756e7410021880d095ffbc3120075080d0acf30e12160a04666c"
    "6f7710031880d095ffbc312009650000c03f121e0a08707265737375726510041880d095ffbc31200a6900000000000002c012160a0772756e6e696e67"
    "10051880d095ffbc31200b700112150a056c6162656c10061880d095ffbc31200c7a01781801",
    "08e8d795ffbc31120c100118e8d795ffbc31508001120b100218e8d795ffbc315007120e100318e8d795ffbc31650000803e1212100418e8d795ffbc31"
    "690000000000002340120b100518e8d795ffbc3170001802",
]


def test_payloads_of_another_implementation_decode_to_their_values():
    link, bad = Link(), BadInput()
    consumer = link.consumer(("temp", "count", "flow", "pressure", "running"))
    topics = ["spBv1.0/g/NBIRTH/n1", "spBv1.0/g/DBIRTH/n1/d1", "spBv1.0/g/DDATA/n1/d1"]
    samples = [feed(consumer, bad, (topic, bytes.fromhex(body))) for topic, body in zip(topics, PYSPARKPLUG)]
    assert samples[0] == [] and consumer.nodes[("g", "n1")].bd_seq == 3
    assert samples[1] == [(1.7e9, {0: -5.0, 1: 4e9, 2: 1.5, 3: -2.25, 4: 1.0})]  # the String metric matches no feature
    assert samples[2] == [(1.7e9 + 1, {0: -128.0, 1: 7.0, 2: 0.25, 3: 9.5, 4: 0.0})]
    assert not bad.counts and link.sent == []


def test_signed_integers_are_written_as_other_implementations_write_them():
    writer = EdgeNodeWriter("g", "n1")
    writer.define("d1", [("temp", pb.Int8)])
    writer.birth({})
    _, payload = writer.device_birth("d1", [-5], 1_700_000_000_000)
    assert decode(payload).metrics[0].int_value == 251  # as pysparkplug encodes Int8 -5
