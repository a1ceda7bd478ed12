"""A Sparkplug B edge node driven by pysparkplug (an independent implementation), run in its own venv.

Usage: python spb_edge_node.py HOST PORT GROUP EDGE DEVICE T0_MS
Prints one line per step so the test can follow: connected, data-sent, gap-sent, rebirth-received,
reborn, done. It then idles until killed (SIGKILL: the broker publishes its NDEATH will).
"""

import itertools
import sys
import threading
import time

import pysparkplug as spb

host, port, group, edge, device, t0 = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6], int(sys.argv[6])
rebirth = threading.Event()
D = spb.DataType


def on_ncmd(node, message):
    for metric in message.payload.metrics:
        if metric.name == "Node Control/Rebirth" and metric.value:
            rebirth.set()


def device_metrics(lat, ts):
    return (
        spb.Metric(timestamp=ts, name="GPS/Latitude", alias=1, datatype=D.DOUBLE, value=lat),
        spb.Metric(timestamp=ts, name="GPS/Longitude", alias=2, datatype=D.DOUBLE, value=18.0),
        spb.Metric(timestamp=ts, name="Engine/Hours", alias=3, datatype=D.DOUBLE, value=1000.0),
        spb.Metric(timestamp=ts, name="Engine/Running", alias=4, datatype=D.BOOLEAN, value=True),
        spb.Metric(timestamp=ts, name="Cab/Temperature", alias=5, datatype=D.INT16, value=-12),
    )


def say(line):
    print(line, flush=True)


node = spb.EdgeNode(group, edge, metrics=(spb.Metric(timestamp=t0, name="Properties/Model", datatype=D.STRING,
                                                     value="gateway"),), cmd_callback=on_ncmd)
node.register(spb.Device(device, device_metrics(59.0, t0)))
node.connect(host, port=port)
time.sleep(1.0)
say("connected")
ts = t0
for i in range(20):  # DATA with names and aliases, through the library's own update path
    ts += 1000
    node.update_device(device, (spb.Metric(timestamp=ts, name="GPS/Latitude", alias=1, datatype=D.DOUBLE,
                                           value=59.0 + i / 1000),))
ddata_topic = spb.Topic(message_type=spb.MessageType.DDATA, group_id=group, edge_node_id=edge, device_id=device)


def alias_only(values, seq, historical=False):
    metrics = tuple(spb.Metric(timestamp=t, name=None, alias=1, datatype=D.DOUBLE, value=v, is_historical=historical)
                    for t, v in values)
    node._client.publish(spb.Message(topic=ddata_topic, payload=spb.DData(spb.get_current_timestamp(), seq=seq,
                                     metrics=metrics), qos=spb.QoS.AT_MOST_ONCE, retain=False))


for i in range(20):  # DATA with aliases only (no names, no datatypes), as bandwidth-saving nodes send
    ts += 1000
    alias_only([(ts, 59.1 + i / 1000)], node._seq)
alias_only([(t0 - 3_600_000 + k * 1000, 58.0 + k / 1000) for k in range(3)], node._seq, historical=True)
say("data-sent")
lost = node._seq  # a message lost on the way: the next seq leaves a gap
alias_only([(ts + 1000, 1.0)], node._seq)
alias_only([(ts + 2000, 2.0)], node._seq)
say("gap-sent")
if not rebirth.wait(15):
    say("no-rebirth-request")
    sys.exit(1)
say("rebirth-received")
# Rebirth as the library's connect callback does it: seq from 0, NBIRTH with the same bdSeq, then DBIRTH
node._EdgeNode__seq_cycler = itertools.cycle(range(256))
nbirth_topic = spb.Topic(message_type=spb.MessageType.NBIRTH, group_id=group, edge_node_id=edge)
birth_metrics = (*node.metrics.values(), spb.Metric(timestamp=spb.get_current_timestamp(), name="bdSeq",
                                                    datatype=D.INT64, value=0))
node._client.publish(spb.Message(topic=nbirth_topic, payload=spb.NBirth(spb.get_current_timestamp(), seq=node._seq,
                     metrics=birth_metrics), qos=spb.QoS.AT_MOST_ONCE, retain=False), include_dtypes=True)
ts += 10_000
dbirth_topic = spb.Topic(message_type=spb.MessageType.DBIRTH, group_id=group, edge_node_id=edge, device_id=device)
node._client.publish(spb.Message(topic=dbirth_topic, payload=spb.DBirth(spb.get_current_timestamp(), seq=node._seq,
                     metrics=device_metrics(59.5, ts)), qos=spb.QoS.AT_MOST_ONCE, retain=False), include_dtypes=True)
for i in range(5):
    ts += 1000
    alias_only([(ts, 59.6 + i / 1000)], node._seq)
say("reborn")
time.sleep(0.5)
say("done")
while True:
    time.sleep(1)
