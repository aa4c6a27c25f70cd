"""The IoT Edge hub against an autospec of the real ``IoTHubModuleClient`` (sync)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from unittest.mock import create_autospec

import pytest
from azure.iot.device import IoTHubModuleClient, Message, MethodRequest, MethodResponse
from azure.iot.device import exceptions as sdk_errors
from azure.iot.device.common import transport_exceptions as transport_errors

from mfgvision.edge.hub import HubMessage, MethodArguments, MethodError
from mfgvision.edge.iotedge import (
    Backoff,
    HubClosed,
    IoTEdgeHub,
    iot_edge_environment,
    module_id_from_environment,
)


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def client():
    mock = create_autospec(IoTHubModuleClient, instance=True)
    mock.connected = True
    mock.get_twin.return_value = {
        "desired": {"prob_threshold": 0.5, "$version": 3},
        "reported": {"$version": 1},
    }
    return mock


def _hub(client, **kwargs) -> IoTEdgeHub:
    return IoTEdgeHub(
        "CIS1",
        client_factory=lambda: client,
        backoff_start_s=0.01,
        backoff_max_s=0.05,
        flush_timeout_s=kwargs.pop("flush_timeout_s", 5.0),
        **kwargs,
    )


def test_environment_detection_and_module_id():
    assert not iot_edge_environment({})
    assert iot_edge_environment({"IOTEDGE_WORKLOADURI": "unix:///var/run/iotedge/workload.sock"})
    cs = "HostName=h;GatewayHostName=localhost;DeviceId=d;ModuleId=CIS2;SharedAccessKey=eA=="
    assert iot_edge_environment({"EdgeHubConnectionString": cs})
    assert module_id_from_environment("cis", {"EdgeHubConnectionString": cs}) == "CIS2"
    assert module_id_from_environment("cis", {"IOTEDGE_MODULEID": "CIS3"}) == "CIS3"
    assert module_id_from_environment("cis", {}) == "cis"


def test_backoff_is_capped():
    b = Backoff(1, 8)
    assert [b.next_delay() for _ in range(6)] == [1, 2, 4, 8, 8, 8]
    b.reset()
    assert b.next_delay() == 1


def test_connect_retries_until_edgehub_answers(client):
    client.connect.side_effect = [
        sdk_errors.ConnectionFailedError("refused"),
        sdk_errors.ConnectionFailedError("refused"),
        None,
    ]
    hub = _hub(client)
    hub.connect()
    assert client.connect.call_count == 3
    assert client.on_message_received == hub._on_sdk_message
    hub.connect()  # idempotent
    assert client.connect.call_count == 3
    hub.disconnect()
    client.shutdown.assert_called_once_with()


def test_abort_ends_a_connect_that_keeps_failing(client):
    client.connect.side_effect = sdk_errors.ConnectionFailedError("refused")
    hub = _hub(client)
    threading.Timer(0.2, hub.abort).start()
    with pytest.raises(HubClosed):
        hub.connect()


def test_outputs_are_json_messages_on_the_named_output(client):
    hub = _hub(client)
    hub.connect()
    hub.send_to_output("inference", HubMessage.from_json({"n": 1}, {"camera": "c1"}))
    assert wait_for(lambda: client.send_message_to_output.call_count == 1)
    message, output = client.send_message_to_output.call_args.args
    assert output == "inference" and isinstance(message, Message)
    assert json.loads(message.data) == {"n": 1}
    assert (message.content_type, message.content_encoding) == ("application/json", "utf-8")
    assert message.custom_properties == {"camera": "c1"}
    hub.disconnect()


def test_outputs_sent_while_disconnected_are_kept_and_sent_in_order(client):
    up = threading.Event()
    sent: list[int] = []

    def send(message: Message, output: str) -> None:
        if not up.is_set():
            raise sdk_errors.ConnectionFailedError("edgeHub unreachable")
        sent.append(json.loads(message.data)["n"])

    client.send_message_to_output.side_effect = send
    hub = _hub(client)
    hub.connect()
    for n in range(5):
        hub.send_to_output("inference", HubMessage.from_json({"n": n}))
    assert wait_for(lambda: hub.counters["send_retries"] >= 2)
    assert sent == [] and hub.outbox_size == 5
    up.set()
    hub._on_connection_state()  # the SDK reports the reconnect
    assert wait_for(lambda: sent == [0, 1, 2, 3, 4])
    assert hub.outbox_size == 0 and hub.counters["dropped"] == 0
    hub.disconnect()


def test_the_sender_is_told_once_edgehub_has_a_message(client):
    up = threading.Event()

    def send(message: Message, output: str) -> None:
        if not up.is_set():
            raise sdk_errors.ConnectionFailedError("edgeHub unreachable")

    client.send_message_to_output.side_effect = send
    hub = _hub(client)
    hub.connect()
    acked: list[int] = []
    for n in range(3):
        hub.send_to_output("inference", HubMessage.from_json({"n": n}), lambda n=n: acked.append(n))
    assert wait_for(lambda: hub.counters["send_retries"] >= 1)
    assert acked == []  # refused by the client: not acknowledged
    up.set()
    hub._on_connection_state()
    assert wait_for(lambda: acked == [0, 1, 2])
    hub.disconnect()


def test_a_full_outbox_drops_the_oldest_and_counts(client):
    client.send_message_to_output.side_effect = sdk_errors.ConnectionFailedError("down")
    hub = _hub(client, outbox_max=3, flush_timeout_s=0.2)
    for n in range(5):  # not connected yet: everything waits in the outbox
        hub.send_to_output("inference", HubMessage.from_json({"n": n}))
    assert hub.outbox_size == 3 and hub.counters["dropped"] == 2
    assert [m.json()["n"] for _, m, _ in hub._outbox] == [2, 3, 4]


def test_a_message_the_client_refuses_is_dropped_not_retried(client):
    client.send_message_to_output.side_effect = [
        ValueError("Size of message can not exceed 256 KB."),
        None,
    ]
    hub = _hub(client)
    hub.connect()
    hub.send_to_output("a", HubMessage.from_json({"n": 1}))
    hub.send_to_output("a", HubMessage.from_json({"n": 2}))
    assert wait_for(lambda: hub.counters["sent"] == 1)
    assert hub.counters["dropped"] == 1 and client.send_message_to_output.call_count == 2
    hub.disconnect()


def test_disconnect_flushes_the_outbox_first(client):
    gate = threading.Event()
    client.send_message_to_output.side_effect = lambda m, o: gate.wait(5)
    hub = _hub(client)
    hub.connect()
    for n in range(3):
        hub.send_to_output("inference", HubMessage.from_json({"n": n}))
    threading.Timer(0.2, gate.set).start()
    hub.disconnect()
    assert client.send_message_to_output.call_count == 3
    assert client.shutdown.called
    hub.send_to_output("inference", HubMessage.from_json({"late": True}))
    assert client.send_message_to_output.call_count == 3


def _input(name: str, body: dict, **props: str) -> Message:
    message = Message(json.dumps(body).encode(), content_type="application/json")
    message.input_name = name
    message.custom_properties.update(props)
    return message


def test_inputs_dispatch_by_name_in_order_and_wait_for_late_handlers(client):
    hub = _hub(client)
    hub.connect()
    got: list[tuple[str | None, int, dict]] = []
    # edgeHub delivers queued messages as soon as the module connects, before it registers
    client.on_message_received(_input("imageUpload", {"n": 0}))
    hub.on_input("imageUpload", lambda m: got.append((m.input_name, m.json()["n"], m.properties)))
    for n in range(1, 4):
        client.on_message_received(_input("imageUpload", {"n": n}, kind="raw"))
    client.on_message_received(_input("unknown", {"n": 99}))
    assert wait_for(lambda: len(got) == 4)
    assert [g[1] for g in got] == [0, 1, 2, 3]
    assert {g[0] for g in got} == {"imageUpload"} and got[1][2] == {"kind": "raw"}
    hub.disconnect()


def test_an_input_handler_that_raises_does_not_stop_delivery(client):
    hub = _hub(client)
    hub.connect()
    got = []

    def handler(m: HubMessage) -> None:
        if m.json()["n"] == 0:
            raise RuntimeError("boom")
        got.append(m.json()["n"])

    hub.on_input("in", handler)
    client.on_message_received(_input("in", {"n": 0}))
    client.on_message_received(_input("in", {"n": 1}))
    assert wait_for(lambda: got == [1])
    hub.disconnect()


def test_twin_and_desired_patches_in_version_order(client):
    hub = _hub(client)
    hub.connect()
    twin = hub.get_twin()
    assert twin["desired"]["prob_threshold"] == 0.5 and twin["desired"]["$version"] == 3
    seen: list[tuple[dict, bool]] = []
    hub.on_desired(lambda desired, full: seen.append((desired, full)))
    assert client.on_twin_desired_properties_patch_received == hub._on_sdk_patch
    client.on_twin_desired_properties_patch_received({"prob_threshold": 0.5, "$version": 3})
    client.on_twin_desired_properties_patch_received({"prob_threshold": 0.7, "$version": 4})
    assert wait_for(lambda: len(seen) == 1)
    assert seen == [({"prob_threshold": 0.7, "$version": 4}, False)]  # version 3 was seen
    # a patch that skips a version (one was missed) makes the hub read the whole twin instead
    client.get_twin.return_value = {"desired": {"camera_id": "c9", "$version": 6}}
    client.on_twin_desired_properties_patch_received({"prob_threshold": 0.6, "$version": 6})
    assert wait_for(lambda: len(seen) == 2)
    assert seen[1] == ({"camera_id": "c9", "$version": 6}, True)
    hub.disconnect()


def test_every_reconnection_hands_over_the_whole_desired_section(client):
    hub = _hub(client)
    hub.connect()
    hub.get_twin()
    seen: list[tuple[dict, bool]] = []
    hub.on_desired(lambda desired, full: seen.append((desired, full)))
    # while disconnected, the operator deleted prob_threshold
    client.get_twin.return_value = {"desired": {"camera_id": "c2", "$version": 5}}
    client.connected = False
    hub._on_connection_state()
    client.connected = True
    hub._on_connection_state()
    assert wait_for(lambda: len(seen) == 1)
    assert seen == [({"camera_id": "c2", "$version": 5}, True)]
    hub.disconnect()


def test_a_lost_session_renews_the_client_and_its_subscriptions():
    """edgeHub restarted without the session: the twin read goes unanswered; a new client is
    connected (which subscribes again) and the twin read on it."""
    hung = threading.Event()
    first = create_autospec(IoTHubModuleClient, instance=True)
    first.connected = True
    first.get_twin.side_effect = [{"desired": {"$version": 1}}, lambda: hung.wait(30)]
    first.get_twin.side_effect = None
    answers = iter([{"desired": {"$version": 1}}])

    def first_twin():
        try:
            return next(answers)
        except StopIteration:
            hung.wait(30)  # no subscription, no answer
            return None

    first.get_twin.side_effect = first_twin
    second = create_autospec(IoTHubModuleClient, instance=True)
    second.connected = True
    second.get_twin.return_value = {"desired": {"prob_threshold": 0.9, "$version": 2}}
    clients = iter([first, second])
    hub = IoTEdgeHub(
        "CIS1",
        client_factory=lambda: next(clients),
        backoff_start_s=0.01,
        backoff_max_s=0.05,
        sdk_timeout_s=0.3,
    )
    hub.connect()
    hub.get_twin()
    seen: list[tuple[dict, bool]] = []
    changes: list[bool] = []
    hub.on_desired(lambda desired, full: seen.append((desired, full)))
    hub.on_connection_change(changes.append)
    hub.on_method("status", lambda _p: {"ok": True})
    first.connected = False
    hub._on_connection_state()
    first.connected = True
    hub._on_connection_state()
    assert wait_for(lambda: seen == [({"prob_threshold": 0.9, "$version": 2}, True)])
    first.shutdown.assert_called_once_with()
    second.connect.assert_called_once_with()
    assert second.on_twin_desired_properties_patch_received == hub._on_sdk_patch
    assert second.on_method_request_received == hub._on_sdk_method
    assert second.on_message_received == hub._on_sdk_message
    assert hub.counters["renewed"] == 1
    assert changes == [False, True]  # the module is told, so it can send again what is at risk
    hung.set()
    hub.disconnect()


def test_get_twin_retries_while_edgehub_is_away(client):
    twin = {"desired": {"$version": 1}, "reported": {}}
    client.get_twin.side_effect = [sdk_errors.ConnectionDroppedError("lost"), twin]
    hub = _hub(client)
    hub.connect()
    assert hub.get_twin()["desired"] == {"$version": 1}
    hub.disconnect()


def test_reported_patches_never_block_and_are_coalesced(client):
    gate = threading.Event()
    sent: list[dict] = []

    def patch(reported: dict) -> None:
        gate.wait(30)
        sent.append(reported)

    client.patch_twin_reported_properties.side_effect = patch
    hub = _hub(client, sdk_timeout_s=0.3)
    hub.connect()
    hub.patch_reported({"status": {"state": "running", "fps": 1}})
    # edgeHub does not answer: the caller is never held up, later patches wait as one
    for fps in range(2, 50):
        hub.patch_reported({"status": {"fps": fps}, "error": None})
    hub.patch_reported({"config": {"applied_version": 4}})
    assert wait_for(lambda: client.patch_twin_reported_properties.call_count >= 2)
    gate.set()
    assert wait_for(lambda: any(p.get("config") for p in sent))
    last = [p for p in sent if p.get("config")][-1]
    assert last == {
        "status": {"state": "running", "fps": 49},
        "error": None,
        "config": {"applied_version": 4},
    }
    hub.disconnect()


def test_an_sdk_call_that_never_returns_times_out(client):
    client.get_twin.side_effect = lambda: threading.Event().wait(30)
    hub = _hub(client, sdk_timeout_s=0.2)
    hub.connect()
    with pytest.raises(sdk_errors.OperationTimeout):
        hub._read_twin()
    threading.Timer(0.5, hub.abort).start()
    with pytest.raises(HubClosed):
        hub.get_twin()  # retried until the hub is closed, never stuck
    hub.disconnect()


def test_disconnect_ends_even_when_edgehub_never_answers(client):
    never = threading.Event()
    client.patch_twin_reported_properties.side_effect = lambda _p: never.wait(30)
    client.send_message_to_output.side_effect = lambda _m, _o: never.wait(30)
    client.shutdown.side_effect = lambda: never.wait(30)
    hub = _hub(client, sdk_timeout_s=0.2, flush_timeout_s=0.5)
    hub.connect()
    hub.send_to_output("inference", HubMessage.from_json({"n": 1}))
    hub.report(lambda: {"status": {"state": "stopped"}})
    done = threading.Event()
    threading.Thread(target=lambda: (hub.disconnect(), done.set()), daemon=True).start()
    assert done.wait(20)
    never.set()


def test_reports_send_only_what_changed(client):
    hub = _hub(client)
    hub.connect()
    hub.report(lambda: {"status": {"state": "running", "fps": 1.0}, "updated": "t1"})
    assert wait_for(lambda: client.patch_twin_reported_properties.call_count == 1)
    hub.report(lambda: {"status": {"state": "running", "fps": 1.5}, "updated": "t2"})  # figures
    hub.report(lambda: {"status": {"state": "degraded", "fps": 1.5}, "updated": "t3"})
    assert wait_for(lambda: client.patch_twin_reported_properties.call_count == 2)
    sent = [c.args[0] for c in client.patch_twin_reported_properties.call_args_list]
    assert sent[0] == {"status": {"state": "running", "fps": 1.0}, "updated": "t1"}
    assert sent[1] == {"status": {"state": "degraded", "fps": 1.5}, "updated": "t3"}
    hub.disconnect()


def _request(name: str, payload) -> MethodRequest:
    return MethodRequest(request_id="7", name=name, payload=payload)


class Timeout(MethodArguments):
    timeout_s: float = 1.0


def test_direct_methods_answer_with_status_and_payload(client):
    hub = _hub(client)
    hub.connect()

    def capture(arguments: Timeout) -> dict:
        if arguments.timeout_s == 99:
            raise MethodError(409, "busy")
        return {"ok": True, "echo": arguments.model_dump()}

    hub.on_method("capture_now", capture, Timeout)
    assert client.on_method_request_received == hub._on_sdk_method
    responses: list[MethodResponse] = []
    client.send_method_response.side_effect = responses.append
    client.on_method_request_received(_request("capture_now", {"timeout_s": 3}))
    client.on_method_request_received(_request("capture_now", {"timeout_s": 99}))
    client.on_method_request_received(_request("nope", None))
    assert [(r.request_id, r.status) for r in responses] == [("7", 200), ("7", 409), ("7", 404)]
    assert responses[0].payload == {"ok": True, "echo": {"timeout_s": 3.0}}
    assert "unknown method" in responses[2].payload["error"]
    hub.disconnect()


def test_handlers_registered_before_connect_are_installed_on_connect(client):
    hub = _hub(client)
    hub.on_method("status", lambda _p: {"ok": True})
    hub.on_desired(lambda _p, _full: None)
    hub.connect()
    assert client.on_method_request_received == hub._on_sdk_method
    assert client.on_twin_desired_properties_patch_received == hub._on_sdk_patch
    hub.disconnect()


def test_the_client_s_own_transport_errors_never_stop_the_hub_s_threads(client):
    """A twin read or a send on a client edgeHub just dropped connects it implicitly and raises the
    transport's own ConnectionFailedError; the hub retries instead of losing its twin or sender
    thread."""
    hub = _hub(client)
    hub.connect()
    seen: list[tuple[dict, bool]] = []
    hub.on_desired(lambda desired, full: seen.append((desired, full)))
    client.get_twin.side_effect = [
        transport_errors.ConnectionFailedError(),
        {"desired": {"prob_threshold": 0.8, "$version": 5}},
    ]
    client.send_message_to_output.side_effect = [transport_errors.ConnectionFailedError(), None]
    hub.send_to_output("inference", HubMessage.from_json({"n": 1}))
    client.connected = False
    hub._on_connection_state()
    client.connected = True
    hub._on_connection_state()
    assert wait_for(lambda: seen == [({"prob_threshold": 0.8, "$version": 5}, True)])
    assert wait_for(lambda: client.send_message_to_output.call_count == 2)
    assert wait_for(lambda: hub.outbox_size == 0)
    hub.disconnect()
