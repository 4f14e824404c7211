"""Contract tests of spdk_bindings.rpc against the recorded SPDK v26.05 exchanges."""

from __future__ import annotations

import time

import pytest
from spdk.rpc.client import JSONRPCException

from spdk_bindings import rpc as R
from spdk_replay import Replay, ReplayClient, load

WORK = "/srv/ss-test"


def client_for(name: str, **kw) -> tuple[R.SpdkRpc, Replay]:
    replay = Replay(name, WORK, **kw)
    return R.SpdkRpc(ReplayClient(replay), timeout=5.0), replay


def call_as_wrapper(rpc: R.SpdkRpc, method: str, params: dict):
    """Call through the wrapper named like the RPC; its keywords are the wire names."""
    return getattr(rpc, method)(**params)


def fail_cases(name: str) -> list[dict]:
    return [ex for ex in load(name, WORK) if str(ex.get("note", "")).startswith("FAIL")
            and "error" in ex]


@pytest.mark.parametrize("name", ["provisioning.jsonl", "nvmf.jsonl", "failures.jsonl"])
def test_whole_transcript_replays_through_the_wrappers(name: str) -> None:
    rpc, replay = client_for(name)
    for ex in list(replay.exchanges):
        method, params = ex["method"], dict(ex["params"])
        wrapped = hasattr(R.SpdkRpc, method) and method != "call"
        try:
            got = call_as_wrapper(rpc, method, params) if wrapped else rpc.call(method, params)
        except (ValueError, TypeError):
            # Our checks refuse what SPDK would refuse: send it raw to see SPDK's answer.
            assert ex.get("error"), f"line {ex['line']}: wrapper refused a valid request"
            with pytest.raises(R.SpdkRpcError):
                rpc.call(method, params)
            continue
        except R.SpdkRpcError as err:
            assert ex.get("error"), f"line {ex['line']}: unexpected error {err}"
            assert (err.code, err.message) == (ex["error"]["code"], ex["error"]["message"])
            continue
        assert "error" not in ex, f"line {ex['line']}: expected an error, got {got!r}"
        assert got == ex["result"]
    assert len(replay.served) >= len(replay.exchanges)


@pytest.mark.parametrize("ex", fail_cases("failures.jsonl") + fail_cases("nvmf.jsonl"),
                         ids=lambda ex: ex["note"][6:60])
def test_every_recorded_failure_surfaces_as_spdk_rpc_error(ex: dict) -> None:
    name = "nvmf.jsonl" if ex in fail_cases("nvmf.jsonl") else "failures.jsonl"
    rpc, replay = client_for(name, start=ex["line"])
    ex = replay.line(ex["line"])  # with this replay's UUIDs
    rpc = rpc.with_device("dev0")
    method, params = ex["method"], dict(ex["params"])
    sent = dict(params)
    if hasattr(R.SpdkRpc, method):
        try:
            call_as_wrapper(rpc, method, params)
        except (ValueError, TypeError) as exc:
            # Refused before sending; only malformed requests may be refused like this.
            assert ex["error"]["message"] in ("spdk_json_decode_object failed",
                                              "Invalid argument"), exc
            assert replay.served == []
        except R.SpdkRpcError as err:
            check_error(err, ex, method)
            assert params == sent  # the client's quirk did not reach the caller's dict
            return
        else:
            pytest.fail("no error raised")
    with pytest.raises(R.SpdkRpcError) as info:
        rpc.call(method, params)
    check_error(info.value, ex, method)
    assert params == sent


def check_error(err: R.SpdkRpcError, ex: dict, method: str) -> None:
    assert err.method == method
    assert err.code == ex["error"]["code"]
    assert err.message == ex["error"]["message"]
    assert err.device == "dev0"
    text = str(err)
    assert method in text and "'dev0'" in text and ex["error"]["message"] in text
    assert str(ex["error"]["code"]) in text


def test_malformed_requests_are_refused_before_sending() -> None:
    # The recorded cases where SPDK's only answer was "spdk_json_decode_object failed":
    # the wrappers must catch each one, because SPDK's answer names nothing.
    decode = [ex for ex in fail_cases("failures.jsonl")
              if ex["error"]["message"] == "spdk_json_decode_object failed"
              and hasattr(R.SpdkRpc, ex["method"])]
    assert len(decode) >= 9
    rpc, replay = client_for("failures.jsonl")
    for ex in decode:
        with pytest.raises((ValueError, TypeError)):
            call_as_wrapper(rpc, ex["method"], dict(ex["params"]))
    assert replay.served == []


def test_codes_parsed_from_the_client_text() -> None:
    rpc, _ = client_for("failures.jsonl")
    with pytest.raises(R.SpdkRpcError) as info:
        rpc.bdev_lvol_create("too_big", 4096, lvs_name="fpool", thin_provision=None)
    assert info.value.is_(-32602, "No space left on device")
    assert info.value.params == {"lvs_name": "fpool", "lvol_name": "too_big", "size_in_mib": 4096}
    code, msg = R.parse_exception_text("Timeout while waiting for response:\n\n")
    assert (code, msg) == (None, "Timeout while waiting for response:")


def test_params_dict_is_fresh_per_call() -> None:
    rpc, replay = client_for("failures.jsonl")
    params = {"name": "no_such_bdev"}
    with pytest.raises(R.SpdkRpcError) as info:
        rpc.call("bdev_get_bdevs", params)
    assert params == {"name": "no_such_bdev"}
    assert info.value.params == {"name": "no_such_bdev"}
    assert info.value.is_(R.ENODEV, "No such device")


def test_uuid_results_feed_later_calls() -> None:
    # Later requests that name a UUID take it from an earlier result, never from the test.
    rpc, replay = client_for("provisioning.jsonl")
    rpc.bdev_aio_create("aio0", f"{WORK}/aio0.img", 512)
    lvs = rpc.bdev_lvol_create_lvstore("aio0", "pool0", 4 * 1024 * 1024)
    assert rpc.bdev_lvol_get_lvstores(lvs_name="pool0")[0]["uuid"] == lvs
    thick = rpc.bdev_lvol_create("vol_thick", 1024, lvs_name="pool0", thin_provision=False)
    rpc.bdev_lvol_create("vol_thin", 512, lvs_name="pool0", thin_provision=True)
    small = rpc.bdev_lvol_create("vol_small", 10, uuid=lvs)
    bdev = rpc.bdev_get_bdevs(name="pool0/vol_thick")[0]
    assert bdev["name"] == thick and bdev["num_blocks"] * bdev["block_size"] == 1024 * 2**20
    assert small in {lv["uuid"] for lv in rpc.bdev_lvol_get_lvols(lvs_name="pool0")}


def test_deadline_on_monotonic_clock_refuses_late_calls() -> None:
    rpc, replay = client_for("provisioning.jsonl")
    with rpc.deadline(0.0):
        time.sleep(0.001)
        with pytest.raises(R.SpdkTimeoutError) as info:
            rpc.spdk_get_version()
    assert "deadline" in str(info.value) and replay.served == []
    assert rpc.spdk_get_version()["fields"]["major"] == 26  # outside the block again


def test_client_timeout_closes_the_connection() -> None:
    class Silent:
        timeout = 1.0

        def call(self, method, params=None):
            # What JSONRPCClient.recv raises when nothing arrives in time.
            raise JSONRPCException("Timeout while waiting for response:\n\n")

        def close(self):
            pass

    rpc = R.SpdkRpc(Silent(), timeout=0.5, device="nvme0")
    with pytest.raises(R.SpdkTimeoutError):
        rpc.bdev_get_bdevs()
    with pytest.raises(R.SpdkConnectionError):
        rpc.bdev_get_bdevs()


def test_connect_names_the_socket(tmp_path) -> None:
    sock = str(tmp_path / "no-spdk.sock")
    with pytest.raises(R.SpdkConnectionError) as info:
        R.connect(sock, timeout=1.0, device="nvme0")
    assert sock in str(info.value) and "nvme0" in str(info.value)
