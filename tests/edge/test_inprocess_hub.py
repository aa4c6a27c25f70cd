import threading

from mfgvision.edge.hub import HubMessage, MethodArguments, MethodError
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.routes import parse_route


def _broker(tmp_path=None):
    routes = [
        parse_route(
            "a",
            'FROM /messages/modules/cam/outputs/images INTO BrokeredEndpoint("/modules/up/inputs/in")',
        ),
        parse_route("b", "FROM /messages/modules/cam/outputs/inference INTO $upstream"),
    ]
    return InProcessBroker(routes, upstream_file=tmp_path / "up.jsonl" if tmp_path else None)


def test_routes_deliver_in_order_on_the_target_thread(tmp_path):
    broker = _broker(tmp_path)
    cam, up = broker.hub("cam"), broker.hub("up")
    got, done = [], threading.Event()

    def handler(msg: HubMessage):
        got.append((msg.input_name, msg.json()["n"], threading.current_thread().name))
        if len(got) == 5:
            done.set()

    up.on_input("in", handler)
    cam.connect()
    up.connect()
    for n in range(5):
        cam.send_to_output("images", HubMessage.from_json({"n": n}))
    cam.send_to_output("inference", HubMessage.from_json({"x": 1}))
    cam.send_to_output("unrouted", HubMessage.from_json({"x": 2}))
    assert done.wait(5)
    assert [g[1] for g in got] == [0, 1, 2, 3, 4]
    assert {g[0] for g in got} == {"in"} and {g[2] for g in got} == {"hub-up"}
    assert [(m, o) for m, o, _ in broker.upstream] == [("cam", "inference")]
    assert '"x": 1' in (tmp_path / "up.jsonl").read_text()
    up.disconnect()
    cam.disconnect()


def test_desired_patch_bumps_version_and_notifies():
    broker = _broker()
    hub = broker.hub("cam", {"a": 1})
    seen, done = [], threading.Event()
    hub.on_desired(lambda p, full: (seen.append((p, full)), done.set()))
    hub.connect()
    version = broker.patch_desired("cam", {"b": 2, "a": None})
    assert done.wait(5)
    assert seen == [({"b": 2, "a": None, "$version": version}, False)]
    assert hub.get_twin()["desired"] == {"b": 2, "$version": version}
    hub.patch_reported({"status": {"state": "running", "fps": 1}})
    hub.patch_reported({"status": {"fps": 2}})
    assert hub.get_twin()["reported"] == {"status": {"state": "running", "fps": 2}}
    hub.disconnect()


class Numbered(MethodArguments):
    n: str = "0"


def test_methods_never_raise():
    hub = _broker().hub("cam")
    hub.on_method("ok", lambda a: {"echo": a.model_dump()}, Numbered)
    hub.on_method("conflict", lambda p: (_ for _ in ()).throw(MethodError(409, "busy")))
    hub.on_method("bad", lambda a: int(a.n), Numbered)
    hub.on_method("boom", lambda p: 1 / 0)
    assert hub.call_method("ok", {"n": "1"}) == (200, {"echo": {"n": "1"}})
    assert hub.call_method("nope", None)[0] == 404
    assert hub.call_method("conflict", None) == (409, {"error": "busy"})
    assert hub.call_method("bad", {"n": "x"})[0] == 400
    assert hub.call_method("boom", None)[0] == 500


def test_report_never_raises_and_returns_what_was_built(monkeypatch, caplog):
    hub = _broker().hub("cam")
    assert hub.report(lambda: {"status": {"state": "running"}}) == {"status": {"state": "running"}}
    assert hub.get_twin()["reported"] == {"status": {"state": "running"}}

    def refuse(_patch):
        raise ConnectionError("hub away")

    monkeypatch.setattr(hub, "patch_reported", refuse)
    built = hub.report(lambda: {"status": {"state": "degraded"}})
    assert built == {"status": {"state": "degraded"}}  # still usable, e.g. for a status file
    assert hub.report(lambda: {"n": 1 / 0}) is None
    messages = [r.getMessage() for r in caplog.records]
    assert "reported properties not sent" in messages
    assert "reported properties not built" in messages


def test_a_reconnection_hands_over_the_whole_desired_section_and_reports_everything_again():
    broker = _broker()
    hub = broker.hub("cam", {"a": 1, "b": 2})
    seen, done = [], threading.Event()
    hub.on_desired(lambda p, full: (seen.append((p, full)), done.set()))
    hub.connect()
    hub.report(lambda: {"status": {"state": "running"}})
    hub.reported.clear()  # as if the hub had lost what was reported
    hub.report(lambda: {"status": {"state": "running"}})
    assert hub.get_twin()["reported"] == {}  # unchanged: nothing sent
    hub.reconnect()
    assert done.wait(5)
    assert seen == [({"a": 1, "b": 2, "$version": 1}, True)]
    hub.report(lambda: {"status": {"state": "running"}})
    assert hub.get_twin()["reported"] == {"status": {"state": "running"}}
    hub.disconnect()
